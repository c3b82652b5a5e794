"""An exercise's workspace: its own copy of everything it may break, and plain self-checks.

:func:`workspace` gives an exercise a folder under ``data/exercises/<exercise>/``
(``HDB_EXERCISES_DIR`` moves it) restored from a checkpoint: the warehouse, Meltano's state for
it, the delivery files, dbt's ``target/`` and logs, a copy of the dbt project for the exercises
that change it, and a Dagster home for the Dagster ones. Activated in a notebook's kernel, it
points the pipeline's settings and tools at those copies, so nothing an exercise does reaches
the project's own warehouse, state, dbt project or Dagster instance.

:class:`CheckResult` is what a self-check returns: what is right, what is still missing, and a
hint, in plain sentences. :meth:`CheckResult.assert_done` prints it, or raises
:class:`NotDoneYet` with the same text, so an unfinished exercise fails under papermill and
nbval as it does in JupyterLab.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from classroom.checkpoints import (
    Checkpoint,
    PipelineFolder,
    build_checkpoint,
    copy_state,
    copy_warehouse,
)
from hdb_elt.seeds import SEEDS_DIR_ENV
from hdb_elt.settings import (
    CATALOG_SETTING,
    DATA_DIR,
    DATA_PATH_SETTING,
    DBT_PROJECT_DIR,
    Settings,
    display_path,
    environment,
    resolve_path,
    stage_settings,
)
from hdb_elt.transform import dbt_executable, new_run_target, plain_output, read_run_results
from hdb_elt.warehouse import connect

EXERCISES_ENV = "HDB_EXERCISES_DIR"
# What the variables a workspace sets held before the first workspace of this process was
# activated (None: unset). A second Run All of an exercise must build its reference state from
# the deliveries the settings named then, not from the workspace the first run changed.
_OUTSIDE_ENVIRON: dict[str, str | None] = {}
DEFAULT_EXERCISES_DIR = DATA_DIR / "exercises"
# Every exercise starts from the reference state after the transform stage for two months:
# enough to see everything the pipeline does, small enough to run in seconds.
WINDOW = ("2023-01", "2023-02")
CHECKPOINT_STAGE = "03_transform"


@dataclass(frozen=True)
class Exercise:
    """One exercise: its notebook's name and title, and what its workspace needs."""

    name: str
    title: str
    minutes: int
    copies_dbt_project: bool = False
    dagster: bool = False

    @property
    def number(self) -> str:
        return self.name.split("_", 1)[0]

    def label(self) -> str:
        return f"exercise {self.number} · {self.title}"


EXERCISES: dict[str, Exercise] = {
    e.name: e
    for e in (
        Exercise("01_add_a_validation_rule", "Add a validation rule", 30),
        Exercise("02_add_a_dbt_model", "Add a dbt model with tests", 40, copies_dbt_project=True),
        Exercise("03_write_a_dbt_unit_test", "Write a dbt unit test", 30, copies_dbt_project=True),
        Exercise("04_redeliver_a_month", "Re-deliver a revised month", 30),
        Exercise("05_backfill_in_dagster", "Backfill months in Dagster", 35, dagster=True),
        Exercise("06_add_an_asset_check", "Add an asset check to Dagster", 35, dagster=True),
        Exercise("07_absorb_a_new_spelling", "Absorb a new spelling", 30, copies_dbt_project=True),
    )
}


class ExerciseError(RuntimeError):
    """An exercise's workspace cannot be made; the message says why and what to do."""


class NotDoneYet(AssertionError):
    """A self-check found something still missing; the message lists it, with a hint."""

    def _render_traceback_(self) -> list[str]:
        # IPython (JupyterLab, papermill) shows what this returns instead of a traceback: the
        # learner reads the self-check's message, not the frames of the code that raised it.
        return f"{type(self).__name__}: {self}".splitlines()


def exercise(name: str) -> Exercise:
    """The exercise a name means: ``01``, ``1``, ``add_a_validation_rule`` or its full name."""
    text = str(name).strip().lower()
    for candidate in EXERCISES.values():
        number, rest = candidate.name.split("_", 1)
        if text in (candidate.name, number, rest, str(int(number))):
            return candidate
    choices = ", ".join(EXERCISES)
    raise ExerciseError(f"{name!r} is not an exercise: expected one of {choices}.")


def exercises_dir() -> Path:
    """Where workspaces live: ``HDB_EXERCISES_DIR``, else ``data/exercises/``."""
    configured = environment().get(EXERCISES_ENV, "").strip()
    return resolve_path(configured, EXERCISES_ENV) if configured else DEFAULT_EXERCISES_DIR


# --- dbt in a workspace ------------------------------------------------------------------------


@dataclass
class DbtRun:
    """What one dbt command did in a workspace: its exit code, its output, its results."""

    args: list[str]
    returncode: int
    output: str
    results: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def table(self) -> pd.DataFrame:
        """One row per node dbt ran: name, kind, status, failing rows and dbt's message."""
        rows = []
        for result in self.results:
            parts = result["unique_id"].split(".")
            # test.<project>.<name>.<hash>, unit_test.<project>.<model>.<name>, model.<p>.<name>
            kind, name = parts[0], parts[-1] if parts[0] == "unit_test" else parts[2]
            message = (result.get("message") or "").strip()
            rows.append(
                {
                    "name": name,
                    "kind": kind,
                    "status": result["status"],
                    "failures": result.get("failures"),
                    "message": message if result["status"] not in ("success", "pass") else "",
                }
            )
        frame = pd.DataFrame(rows, columns=["name", "kind", "status", "failures", "message"])
        order = {"seed": 0, "operation": 1, "model": 2, "test": 3, "unit_test": 4}
        frame = frame.assign(_order=frame["kind"].map(order).fillna(9))
        frame = frame.sort_values(["_order", "name"]).drop(columns="_order")
        return frame.astype({"failures": "Int64"}).reset_index(drop=True)

    def summary(self) -> str:
        """One line: ``dbt build: 1 model success, 3 tests pass`` (or why nothing ran)."""
        command = f"dbt {self.args[0]}" if self.args else "dbt"
        if not self.results:
            if self.ok:
                return f"{command}: nothing selected, nothing ran."
            return f"{command} failed before running anything:\n{self.error_lines()}"
        counts = self.table().groupby(["kind", "status"]).size()
        parts = [
            f"{n} {kind.replace('_', ' ')}{'' if n == 1 else 's'} {status}"
            for (kind, status), n in counts.items()
        ]
        return f"{command}: " + ", ".join(parts)

    def error_lines(self, limit: int = 12) -> str:
        """The lines of dbt's output that say what went wrong."""
        lines = [line for line in self.output.splitlines() if line.strip()]
        keep = [
            line
            for line in lines
            if any(w in line for w in ("Error", "error", "FAIL", "Failure", "Compilation"))
        ]
        chosen = keep or lines[-limit:]
        return "\n".join(_strip_time(line) for line in chosen[:limit])


def _strip_time(line: str) -> str:
    # dbt prefixes its lines with a time: "07:24:05  Done."
    head, _, rest = line.partition("  ")
    return rest if len(head) == 8 and head.count(":") == 2 else line


# --- the workspace -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Workspace(PipelineFolder):
    """An exercise's own copies: warehouse, deliveries, Meltano state, dbt target (and project),
    Dagster home. :meth:`activate` points this process's pipeline settings at them."""

    exercise: Exercise
    root: Path
    checkpoint: Checkpoint
    settings: Settings

    @property
    def dbt_project_dir(self) -> Path:
        """The workspace's copy of dbt_resale_flat/, or the project's own one (used read-only)
        for exercises that do not change it."""
        if self.exercise.copies_dbt_project:
            return self.root / "dbt_resale_flat"
        return DBT_PROJECT_DIR

    def env(self) -> dict[str, str]:
        """The variables that make the pipeline's stages and tools use this workspace."""
        values = {
            "HDB_WAREHOUSE_PATH": str(self.warehouse_path),
            "HDB_RESALE_DATA_DIR": str(self.deliveries_dir),
            "HDB_START_MONTH": str(self.settings.start_month),
            "HDB_END_MONTH": str(self.settings.end_month),
            "HDB_LOOKBACK_MONTHS": str(self.settings.lookback_months),
            # An exercise works on its own copy, a DuckDB file, also in a class whose .env
            # names the shared warehouse: empty wins over .env (hdb_elt.settings.lake_from).
            CATALOG_SETTING: "",
            DATA_PATH_SETTING: "",
            **self.tool_env(),
        }
        if self.exercise.copies_dbt_project:
            # The gate reads the seeds dbt reads: the workspace's copy (hdb_elt.seeds).
            values[SEEDS_DIR_ENV] = str(self.dbt_project_dir / "seeds")
        if self.exercise.dagster:
            values["DAGSTER_HOME"] = str(self.dagster_home)
            values["HDB_DAGSTER_RUNS_DIR"] = str(self.runs_dir)
            values["TQDM_DISABLE"] = "1"  # papermill's progress bars, inside a notebook
        return values

    def activate(self) -> Workspace:
        """Point this process (a notebook's kernel) at the workspace: ``stage_settings()``,
        Meltano and dbt now read and write the workspace's copies.

        The values these variables had before the first workspace was activated are kept, so
        :func:`workspace` can put them back before it builds or restores a reference state."""
        values = self.env()
        for name in values:
            _OUTSIDE_ENVIRON.setdefault(name, os.environ.get(name))
        os.environ.update(values)
        return self

    def describe(self) -> str:
        """What the workspace holds, in a few lines."""
        rows = sum(self.checkpoint.info["raw_rows"].values())
        project = (
            "a copy of dbt_resale_flat/ (change it freely)"
            if self.exercise.copies_dbt_project
            else "dbt_resale_flat/ (read only; target/ and logs in the workspace)"
        )
        lines = [
            f"Workspace of {self.exercise.label()}: {display_path(self.root)}/",
            f"  warehouse:  {self.checkpoint.describe()} ({rows:,} rows)",
            f"  deliveries: {len(list(self.deliveries_dir.glob('*.csv')))} files, "
            f"Meltano state and dbt artifacts: in the workspace",
            f"  dbt:        {project}",
        ]
        if self.exercise.dagster:
            lines.append("  Dagster:    its own instance (DAGSTER_HOME) and run records")
        return "\n".join(lines)

    # -- helpers the exercises share --

    def write_file(self, relative: str, text: str | None, *, variable: str) -> None:
        """Write ``text`` to ``relative`` in the workspace (its dbt copy for ``dbt_resale_flat/``
        paths); with ``text`` None, say which variable is still empty and write nothing."""
        if text is None:
            print(f"{variable} is still None: nothing written yet.")
            return
        if not isinstance(text, str):
            raise TypeError(f"{variable} must be a string (text), not a {type(text).__name__}.")
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.strip() + "\n")
        print(f"Wrote {relative} ({len(text.strip().splitlines())} lines).")

    def run_dbt(self, args: Sequence[str], *, project_dir: Path | None = None) -> DbtRun:
        """Run dbt on the workspace's project (or ``project_dir``), warehouse and target."""
        project = project_dir or self.dbt_project_dir
        base = self.dbt_target_dir if project_dir is None else project / "target"
        target = new_run_target(base)  # this run's artifacts alone
        env = {
            **self.settings.child_env(),
            **self.env(),
            "DBT_TARGET_PATH": str(target),
            "DBT_LOG_PATH": str(base.parent / "logs"),
        }
        completed = subprocess.run(
            [
                dbt_executable(),
                *args,
                "--project-dir",
                str(project),
                "--profiles-dir",
                str(project),
            ],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        results = read_run_results(target) or []
        return DbtRun(list(args), completed.returncode, plain_output(completed), results)

    def query(self, sql: str, params: Sequence | None = None) -> pd.DataFrame:
        """A read-only query on the workspace's warehouse (closed at once)."""
        with connect(self.warehouse_path, read_only=True) as con:
            return con.execute(sql, list(params or [])).df()

    def has_relation(self, relation: str) -> bool:
        schema, name = relation.split(".")
        found = self.query(
            "select count(*) as n from information_schema.tables "
            "where table_schema = ? and table_name = ?",
            [schema, name],
        )
        return bool(found["n"].iloc[0])


def workspace(name: str, *, reset: bool = True, activate: bool = True) -> Workspace:
    """A fresh workspace for an exercise, restored from its checkpoint (built on first use).

    Running it again starts the exercise over: the workspace is emptied and restored.
    ``reset=False`` opens the workspace as it is (an instructor looking at a learner's work),
    restoring it only if it does not exist. With ``activate`` (the default, for a notebook's
    kernel) the process's settings point at it.
    """
    chosen = exercise(name)
    leave_workspace()
    checkpoint = build_checkpoint(CHECKPOINT_STAGE, *WINDOW, progress=print)
    root = exercises_dir() / chosen.name
    warehouse = root / "warehouse" / "hdb_resale.duckdb"
    if reset or not warehouse.is_file():
        _restore(chosen, checkpoint, root)
    settings = stage_settings(WINDOW[0], WINDOW[1], warehouse, root / "deliveries")
    made = Workspace(chosen, root, checkpoint, settings)
    return made.activate() if activate else made


def leave_workspace() -> None:
    """Put back the variables an activated workspace changed, as they were before the first
    one (nothing to do if none was activated in this process)."""
    for name, value in _OUTSIDE_ENVIRON.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _OUTSIDE_ENVIRON.clear()


def _restore(chosen: Exercise, checkpoint: Checkpoint, root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    copy_warehouse(checkpoint, root / "warehouse" / "hdb_resale.duckdb")
    copy_state(checkpoint, root / "meltano-state")
    shutil.copytree(checkpoint.deliveries_dir, root / "deliveries")
    (root / "dbt" / "target").mkdir(parents=True)
    if chosen.copies_dbt_project:
        shutil.copytree(
            DBT_PROJECT_DIR,
            root / "dbt_resale_flat",
            ignore=shutil.ignore_patterns("target", "logs", "dbt_packages", ".user.yml"),
        )
    if chosen.dagster:
        (root / "dagster_home").mkdir()


def reset_workspace(name: str) -> Workspace:
    """``make checkpoint EXERCISE=...``: the exercise's workspace as it starts, not activated."""
    return workspace(name, activate=False)


# --- self-checks -------------------------------------------------------------------------------


@dataclass
class CheckResult:
    """What a self-check found: what is right, what is still missing, and a hint."""

    exercise: Exercise
    right: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.missing

    def ok(self, text: str) -> None:
        self.right.append(text)

    def miss(self, text: str, hint: str | None = None) -> None:
        self.missing.append(text)
        if hint and hint not in self.hints:
            self.hints.append(hint)

    def __str__(self) -> str:
        total = len(self.right) + len(self.missing)
        if self.passed:
            head = f"Self-check of {self.exercise.label()}: all {total} checks pass. Well done!"
        else:
            # Later checks run only once earlier ones pass: no total to announce yet.
            head = (
                f"Self-check of {self.exercise.label()}: not done yet, {len(self.right)} "
                f"right so far, {len(self.missing)} still missing."
            )
        lines = [head]
        if self.right:
            lines += ["Right:", *(f"  - {text}" for text in self.right)]
        if self.missing:
            lines += ["Still missing:", *(f"  - {text}" for text in self.missing)]
            if self.hints:
                lines.append("Hint: " + self.hints[0])
        return "\n".join(lines)

    def assert_done(self) -> None:
        """Print the result if everything is right; otherwise raise :class:`NotDoneYet`."""
        __tracebackhide__ = True  # pytest shows the message, not this frame (IPython: see
        # NotDoneYet._render_traceback_)
        if not self.passed:
            raise NotDoneYet(str(self))
        print(self)
