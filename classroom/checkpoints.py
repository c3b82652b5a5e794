"""Checkpoints: the reference state after a stage, built once, restored in seconds.

A checkpoint is what the stage notebooks leave behind when they run on the reference
deliveries: the DuckDB warehouse (with ``report/`` beside it after the report stage), Meltano's
incremental state for that warehouse, and the executed notebooks. It is built by running the
notebooks themselves with papermill, exactly as ``make run`` does, and cached under
``data/checkpoints/`` (``HDB_CHECKPOINTS_DIR``) keyed by everything that could change it: the
stage, the window, the deliveries' content and the pipeline's code. A change to any of them
builds a new one; otherwise it is restored by copying files.

Two uses:

- every classroom exercise starts from one (:func:`classroom.exercises.workspace`);
- a learner whose warehouse is broken, or who wants to jump ahead, restores the state after a
  stage into their own warehouse: ``make checkpoint STAGE=validate`` then opens notebook 03.

While a checkpoint is built, Meltano keeps its state in files inside the checkpoint
(``MELTANO_STATE_BACKEND_URI``) and dbt writes its artifacts there too (``DBT_TARGET_PATH``),
so building one never touches the project's own warehouse, state or ``target/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from classroom.reference_outputs import REFERENCE_DELIVERIES
from hdb_elt.extract_load import latest_delivery_counts, meltano_env, meltano_executable, state_id
from hdb_elt.months import Month
from hdb_elt.settings import (
    DATA_DIR,
    MELTANO_PROJECT_DIR,
    NOTEBOOKS_DIR,
    REPO_ROOT,
    Settings,
    SettingsError,
    display_path,
    environment,
    load_settings,
    resolve_path,
    stage_settings,
)
from hdb_elt.stage_notebooks import STAGE_NAMES, STAGES, StageFailed, run_stages
from hdb_elt.warehouse import ensure_warehouse

CHECKPOINTS_ENV = "HDB_CHECKPOINTS_DIR"
DEFAULT_CHECKPOINTS_DIR = DATA_DIR / "checkpoints"
INFO_FILE = "checkpoint.json"
WAREHOUSE_NAME = "hdb_resale.duckdb"
DELIVERY_NAME = "resale-flat-prices-{month}.csv"

# What a checkpoint depends on besides its stage, window and deliveries: the code that builds
# it. Paths relative to the repository; folders count with everything in them.
RECIPE = (
    "hdb_elt/extract_load.py",
    "hdb_elt/validation",
    "hdb_elt/transform.py",
    "hdb_elt/test.py",
    "hdb_elt/report.py",
    "hdb_elt/long_run.py",
    "hdb_elt/chart_style.py",
    "hdb_elt/warehouse.py",
    "meltano/meltano.yml",
    "meltano/tap-hdb-resale/tap_hdb_resale",
    "meltano/target-hdb-duckdb/target_hdb_duckdb",
    "dbt_resale_flat/dbt_project.yml",
    "dbt_resale_flat/models",
    "dbt_resale_flat/macros",
    "dbt_resale_flat/seeds",
    "dbt_resale_flat/tests",
)


class CheckpointError(RuntimeError):
    """A checkpoint cannot be built or restored; the message says why and what to do."""


def checkpoints_dir() -> Path:
    """Where checkpoints are cached: ``HDB_CHECKPOINTS_DIR``, else ``data/checkpoints/``."""
    configured = environment().get(CHECKPOINTS_ENV, "").strip()
    return resolve_path(configured, CHECKPOINTS_ENV) if configured else DEFAULT_CHECKPOINTS_DIR


def stage_name(value: str) -> str:
    """The stage notebook a name means: ``transform``, ``03``, ``03_transform`` and
    ``extract-load`` are all accepted; anything else is refused with the choices."""
    text = str(value).strip().lower().replace("-", "_")
    for stage in STAGES:
        number, name = stage.split("_", 1)
        if text in (stage, number, name, str(int(number))):
            return stage
    choices = ", ".join(STAGE_NAMES)
    raise CheckpointError(f"{value!r} is not a stage: expected one of {choices}.")


class PipelineFolder:
    """Where things go in a folder the pipeline runs in on its own: a checkpoint, an exercise's
    workspace (a copy of one), notebook 06's sandbox. The class using it has a ``root``."""

    root: Path

    @property
    def warehouse_path(self) -> Path:
        return self.root / "warehouse" / WAREHOUSE_NAME

    @property
    def deliveries_dir(self) -> Path:
        """The folder of delivery files the pipeline reads (copies)."""
        return self.root / "deliveries"

    @property
    def state_dir(self) -> Path:
        """Meltano's state for the warehouse, as Meltano's filesystem state backend keeps it."""
        return self.root / "meltano-state"

    @property
    def dbt_target_dir(self) -> Path:
        return self.root / "dbt" / "target"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def runs_dir(self) -> Path:
        """The executed stage notebooks: the record of what ran."""
        return self.root / "runs"

    def tool_env(self) -> dict[str, str]:
        """The variables that keep Meltano's state and dbt's artifacts and logs in the folder."""
        return {
            "MELTANO_STATE_BACKEND_URI": self.state_dir.as_uri(),
            "DBT_TARGET_PATH": str(self.dbt_target_dir),
            "DBT_LOG_PATH": str(self.root / "dbt" / "logs"),
        }


@dataclass(frozen=True)
class Checkpoint(PipelineFolder):
    """A built checkpoint: the state after ``stage`` for the months ``start..end``."""

    path: Path
    stage: str
    start_month: str
    end_month: str

    @property
    def root(self) -> Path:
        return self.path

    @property
    def info(self) -> dict:
        return json.loads((self.path / INFO_FILE).read_text())

    def describe(self) -> str:
        """One line, no paths: which stages ran on which months."""
        last = STAGES.index(self.stage)
        stages = ", ".join(STAGE_NAMES[: last + 1])
        return f"the reference state after {stages} for {self.start_month}..{self.end_month}"

    def meltano_state(self) -> dict | None:
        """Meltano's state for the checkpoint's warehouse (``{"singer_state": ...}``)."""
        files = sorted(self.state_dir.glob("*/state.json"))
        if not files:
            return None
        return json.loads(files[0].read_text()).get("completed")


# --- the deliveries a checkpoint is built from -------------------------------------------------


def find_deliveries(months: list[str], data_dir: Path | None = None) -> Path:
    """A folder holding a delivery file (``resale-flat-prices-YYYY-MM.csv``) for every month.

    Tried in order: ``data_dir`` (by default the settings' deliveries: ``HDB_RESALE_DATA_DIR``
    or ``data/raw/``), then the reference deliveries beside the repository.
    """
    if data_dir is None:
        try:
            data_dir = load_settings().data_dir
        except SettingsError:
            data_dir = None  # a bad setting is reported by the stages themselves
    candidates = [c for c in (data_dir, REFERENCE_DELIVERIES) if c is not None]
    for folder in candidates:
        if all((Path(folder) / DELIVERY_NAME.format(month=m)).is_file() for m in months):
            return Path(folder)
    wanted = ", ".join(DELIVERY_NAME.format(month=m) for m in (months[0], months[-1]))
    raise CheckpointError(
        f"No folder holds the deliveries of {months[0]}..{months[-1]} ({wanted}...): looked in "
        + ", ".join(display_path(c) for c in candidates)
        + ". Download them with `make data` (HDB_START_MONTH/HDB_END_MONTH for other months), "
        "or set HDB_RESALE_DATA_DIR to a folder that has them."
    )


def _digest_paths(digest, paths: list[Path], root: Path) -> None:
    for path in sorted(paths):
        if path.is_dir():
            files = [
                p
                for p in path.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".pyc")
            ]
            _digest_paths(digest, files, root)
        elif path.is_file():
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())


def _notebook_code(stage: str) -> bytes:
    """The code of a stage notebook: its committed outputs change with every refresh."""
    notebook = json.loads((NOTEBOOKS_DIR / f"{stage}.ipynb").read_text())
    cells = [c["source"] for c in notebook["cells"] if c["cell_type"] == "code"]
    return json.dumps(cells).encode()


def checkpoint_key(stage: str, months: list[str], deliveries: Path) -> str:
    """A short hash of everything a checkpoint depends on."""
    digest = hashlib.sha256()
    digest.update(json.dumps([stage, months]).encode())
    for month in months:
        digest.update((deliveries / DELIVERY_NAME.format(month=month)).read_bytes())
    _digest_paths(digest, [REPO_ROOT / p for p in RECIPE], REPO_ROOT)
    for name in STAGES[: STAGES.index(stage) + 1]:
        digest.update(_notebook_code(name))
    return digest.hexdigest()[:12]


# --- building ----------------------------------------------------------------------------------


def build_checkpoint(
    stage: str,
    start_month: str | Month,
    end_month: str | Month,
    *,
    data_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> Checkpoint:
    """The checkpoint after ``stage`` for the window: from the cache, or built now (saying so
    through ``progress``, as it takes a while).

    Building runs the stage notebooks up to ``stage`` (about 20 s for two months up to the
    transform, a minute or two for a year) in a fresh warehouse. A checkpoint is complete
    once its ``checkpoint.json`` is written; a half-built one (an interrupted build) is
    built again.
    """
    stage = stage_name(stage)
    start, end = Month.parse(str(start_month)), Month.parse(str(end_month))
    months = [str(m) for m in start.range_to(end)]
    source = find_deliveries(months, data_dir)
    key = checkpoint_key(stage, months, source)
    label = f"{stage.split('_', 1)[1]}_{start}_{end}"
    folder = checkpoints_dir() / f"{label}_{key}"
    checkpoint = Checkpoint(folder, stage, str(start), str(end))
    if (folder / INFO_FILE).is_file():
        return checkpoint

    if progress is not None:
        progress(
            f"Building {checkpoint.describe()} by running the stage notebooks (only the first "
            f"time; about {10 + 3 * len(months) * (STAGES.index(stage) + 1)} seconds)..."
        )
    shutil.rmtree(folder, ignore_errors=True)
    checkpoint.deliveries_dir.mkdir(parents=True)
    for month in months:
        shutil.copy2(source / DELIVERY_NAME.format(month=month), checkpoint.deliveries_dir)
    stages = list(STAGES[: STAGES.index(stage) + 1])
    _run_stages_apart(checkpoint, stages)
    info = {
        "stage": stage,
        "start_month": str(start),
        "end_month": str(end),
        "key": key,
        "source": str(source),
        "stages": stages,
        "raw_rows": _raw_rows(checkpoint.warehouse_path),
    }
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    _remove_stale(folder, label)
    return checkpoint


def _run_stages_apart(checkpoint: Checkpoint, stages: list[str]) -> None:
    """Run the stage notebooks for the checkpoint in a child process.

    A process that has imported dagstermill (the kernel of a Dagster exercise) has papermill's
    Python translator replaced by dagstermill's, which only Dagster can drive; a child process
    starts clean, and its environment keeps Meltano's state and dbt's files in the checkpoint.
    """
    job = {
        "start": checkpoint.start_month,
        "end": checkpoint.end_month,
        "warehouse": str(checkpoint.warehouse_path),
        "deliveries": str(checkpoint.deliveries_dir),
        "runs": str(checkpoint.runs_dir),
        "stages": stages,
    }
    completed = subprocess.run(
        [sys.executable, "-m", "classroom.checkpoints", json.dumps(job)],
        env={**os.environ, **checkpoint.tool_env()},
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        detail = completed.stderr.strip().splitlines()[-12:] or ["(no output)"]
        raise CheckpointError(
            f"Building the checkpoint after {stages[-1]} for {checkpoint.start_month}.."
            f"{checkpoint.end_month} failed, so the pipeline itself fails there:\n"
            + "\n".join(detail)
        )


def _build_in_this_process(job: dict) -> int:
    """The child's side of :func:`_run_stages_apart`."""
    settings = stage_settings(job["start"], job["end"], job["warehouse"], job["deliveries"])
    try:
        run_stages(settings, Path(job["runs"]), job["stages"])
    except StageFailed as failure:
        print(failure, file=sys.stderr)
        return 1
    return 0


def _raw_rows(warehouse: Path) -> dict[str, int]:
    return latest_delivery_counts(warehouse)


def _remove_stale(keep: Path, label: str) -> None:
    """Checkpoints of the same stage and window built from older code or data."""
    for other in keep.parent.glob(f"{label}_*"):
        if other != keep and other.is_dir():
            shutil.rmtree(other, ignore_errors=True)


# --- restoring ---------------------------------------------------------------------------------


def copy_warehouse(checkpoint: Checkpoint, warehouse_path: Path) -> None:
    """Copy the checkpoint's warehouse (and its ``report/`` folder, if any) there."""
    warehouse_path = Path(warehouse_path)
    warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", ".wal"):
        target = warehouse_path.with_name(warehouse_path.name + suffix)
        target.unlink(missing_ok=True)
        source = checkpoint.warehouse_path.with_name(checkpoint.warehouse_path.name + suffix)
        if source.exists():
            shutil.copyfile(source, target)
    report = checkpoint.warehouse_path.parent / "report"
    if report.is_dir():
        shutil.copytree(report, warehouse_path.parent / "report", dirs_exist_ok=True)


def copy_state(checkpoint: Checkpoint, state_dir: Path) -> None:
    """Copy Meltano's state of the checkpoint into a filesystem state backend folder."""
    shutil.rmtree(state_dir, ignore_errors=True)
    if checkpoint.state_dir.is_dir():
        shutil.copytree(checkpoint.state_dir, state_dir)
    else:
        state_dir.mkdir(parents=True)


def set_meltano_state(settings: Settings, state: dict) -> None:
    """Give the settings' warehouse this Meltano state, in whatever backend Meltano uses."""
    completed = subprocess.run(
        [
            meltano_executable(),
            "state",
            "set",
            "--force",
            state_id(ensure_warehouse(settings.warehouse_path)),
            json.dumps(state),
        ],
        cwd=MELTANO_PROJECT_DIR,
        env=meltano_env(settings),
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise CheckpointError(
            "The warehouse was restored, but Meltano refused its state, so the next run will "
            "load the whole window again (harmless, only slower):\n"
            + (completed.stderr or completed.stdout)[-1500:]
        )


def restore_stage(settings: Settings, stage: str) -> tuple[Checkpoint, Path | None]:
    """Put the reference state after ``stage`` for the settings' window into their warehouse.

    The warehouse in place is kept beside it as ``<name>.before-checkpoint.duckdb`` (the
    path is returned, None if there was none); Meltano's state follows the restored file, so
    the next run loads only what is new. Returns the checkpoint used.
    """
    checkpoint = build_checkpoint(
        stage, settings.start_month, settings.end_month, data_dir=settings.data_dir, progress=print
    )
    target = settings.warehouse_path
    backup = None
    if target.exists():
        backup = target.with_name(target.stem + ".before-checkpoint" + target.suffix)
        shutil.copyfile(target, backup)
    copy_warehouse(checkpoint, target)
    state = checkpoint.meltano_state()
    if state is not None:
        set_meltano_state(settings, state)
    return checkpoint, backup


if __name__ == "__main__":
    sys.exit(_build_in_this_process(json.loads(sys.argv[1])))
