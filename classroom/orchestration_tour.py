"""Notebook 06 · Orchestrate: how ``dagster_orchestration/`` is built, looked at from a notebook.

The helpers read the code location's own definitions (``dagster_orchestration.definitions.defs``)
rather than describing them again: the assets and what each depends on, the checks and which
of them block, the partitions, the schedule and the sensor. :func:`asset_graph_figure` draws
the graph. :class:`Sandbox` runs partitions through Dagster exactly as ``make run`` does, but in
a folder of its own (a warehouse, deliveries, Meltano state, dbt files, a Dagster instance), so
the lesson can show a month that fails without touching the project's warehouse: raw is
append-only, and a spoiled delivery must not land in it.

Classroom tooling: it imports the orchestrator; the orchestrator never imports it.
"""

from __future__ import annotations

import io
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from IPython.display import Image
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from classroom.checkpoints import PipelineFolder, find_deliveries
from classroom.runner import RUNNING, RunOutcome, execute
from dagster_orchestration.constants import JOB_NAME, SCHEDULE_CRON, SENSOR_INTERVAL_SECONDS
from dagster_orchestration.definitions import defs
from dagster_orchestration.home import prepare_home
from dagster_orchestration.partitions import monthly_partitions
from hdb_elt.settings import Settings, temporary_environ

DELIVERY = "resale-flat-prices-{month}.csv"
SPOIL_EVERY = 20  # a spoiled delivery prices every 20th sale at 1 SGD: 5% of the month


# --- the definitions, as Dagster holds them ----------------------------------------------------


def _assets() -> list:
    return [a for a in defs.assets if hasattr(a, "keys")]


def _checks() -> list:
    return [spec for checks in defs.asset_checks for spec in checks.check_specs]


def assets_table() -> pd.DataFrame:
    """One row per asset: the notebook it runs, what it depends on, its tool and partitions."""
    rows = []
    for asset in _assets():
        (key,) = asset.keys
        spec = next(iter(asset.specs))
        deps = ", ".join(d.asset_key.to_user_string() for d in spec.deps) or "(first)"
        rows.append(
            {
                "asset": key.to_user_string(),
                "runs the notebook": Path(asset.op.tags["notebook_path"]).name,
                "after": deps,
                "tool": spec.tags.get("tool", ""),
                "partitions": f"monthly from {monthly_partitions.start.strftime('%Y-%m')}",
            }
        )
    return pd.DataFrame(rows)


def checks_table() -> pd.DataFrame:
    """One row per asset check: its asset, its name, whether it blocks, what it says."""
    rows = [
        {
            "asset": spec.asset_key.to_user_string(),
            "check": spec.name,
            "blocking": "yes" if spec.blocking else "no (warns)",
            "what it checks": (spec.description or "").split("\n")[0],
        }
        for spec in _checks()
    ]
    return pd.DataFrame(rows)


def automation_table() -> pd.DataFrame:
    """The job, the schedule and the sensor: what starts runs besides a person."""
    (schedule,) = defs.schedules
    (sensor,) = defs.sensors
    return pd.DataFrame(
        [
            {
                "kind": "job",
                "name": JOB_NAME,
                "when": "when asked (UI, make run, a backfill)",
                "what": "every asset of the group, in order, for one month or a range",
            },
            {
                "kind": "schedule",
                "name": schedule.name,
                "when": f"cron {SCHEDULE_CRON!r}, {schedule.execution_timezone}",
                "what": "the previous and the current month",
            },
            {
                "kind": "sensor",
                "name": sensor.name,
                "when": f"every {SENSOR_INTERVAL_SECONDS} s",
                "what": "one run per month of a new or changed delivery file",
            },
        ]
    )


def asset_graph_figure() -> Figure:
    """The asset graph as Dagster draws it, left to right: each asset, its checks below it
    (blocking ones in red), and an arrow to the asset that runs after it."""
    assets = assets_table()["asset"].tolist()
    checks = checks_table()
    fig = Figure(figsize=(11, 2.5))
    FigureCanvasAgg(fig)  # drawn with Agg (and shown inline), whatever backend the kernel has
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, len(assets) * 2.2)
    ax.set_ylim(-1.25, 1)
    ax.axis("off")
    for i, asset in enumerate(assets):
        x = i * 2.2 + 0.2
        ax.add_patch(_box(x, 0, 1.8, 0.7, "#e8f0fe", "#4c6ef5"))
        ax.text(x + 0.9, 0.43, asset, ha="center", va="center", fontsize=11, weight="bold")
        ax.text(x + 0.9, 0.17, "monthly partitions", ha="center", va="center", fontsize=8)
        if i:
            ax.annotate("", (x, 0.35), (x - 0.4, 0.35), arrowprops={"arrowstyle": "->", "lw": 1.5})
        mine = checks[checks["asset"] == asset]
        for j, check in enumerate(mine.itertuples()):
            blocking = check.blocking == "yes"
            y = -0.55 - j * 0.55
            ax.add_patch(_box(x, y, 1.8, 0.42, "#fff0f0" if blocking else "#f4f4f4",
                              "#e03131" if blocking else "#868e96"))  # fmt: skip
            label = f"{check.check}{' (blocks)' if blocking else ''}"
            ax.text(x + 0.9, y + 0.21, label, ha="center", va="center", fontsize=7)
    ax.text(0.2, 0.85, f"job {JOB_NAME}: left to right, each after the one before succeeded",
            fontsize=9, color="#495057")  # fmt: skip
    return fig


def asset_graph() -> Image:
    """:func:`asset_graph_figure` as a PNG image, which a notebook shows whatever its
    matplotlib backend (a bare Figure is shown only once pyplot has been imported)."""
    buffer = io.BytesIO()
    asset_graph_figure().savefig(buffer, format="png", dpi=100, facecolor="white")
    return Image(data=buffer.getvalue(), format="png")


def _box(x: float, y: float, width: float, height: float, face: str, edge: str):
    from matplotlib.patches import FancyBboxPatch

    return FancyBboxPatch(
        (x, y), width, height, boxstyle="round,pad=0.02", facecolor=face, edgecolor=edge
    )


# --- running partitions in a sandbox -----------------------------------------------------------


@dataclass
class Sandbox(PipelineFolder):
    """A folder of its own for Dagster runs: warehouse, deliveries, Meltano state, dbt files,
    Dagster instance and recorded notebooks."""

    root: Path
    source: Path  # where the good deliveries are copied from

    def env(self) -> dict[str, str]:
        return {
            "HDB_WAREHOUSE_PATH": str(self.warehouse_path),
            "HDB_RESALE_DATA_DIR": str(self.deliveries_dir),
            "HDB_DAGSTER_RUNS_DIR": str(self.runs_dir),
            "DAGSTER_HOME": str(self.dagster_home),
            "TQDM_DISABLE": "1",
            **self.tool_env(),
        }

    def deliver(self, month: str, *, spoiled: bool = False) -> str:
        """Copy a month's delivery into the sandbox; ``spoiled``: every 20th price is 1 SGD."""
        target = self.deliveries_dir / DELIVERY.format(month=month)
        lines = (self.source / target.name).read_text(encoding="utf-8-sig").splitlines()
        if spoiled:
            for index in range(1, len(lines), SPOIL_EVERY):
                lines[index] = ",".join([*lines[index].split(",")[:-1], "1"])
        target.write_text("\n".join(lines) + "\n", encoding="utf-8")
        what = f", every {SPOIL_EVERY}th price set to 1 SGD" if spoiled else ""
        return f"Delivered {target.name}: {len(lines) - 1:,} rows{what}."

    def materialize(self, month: str) -> RunOutcome:
        """Materialize every asset for one monthly partition, as the UI's *Materialize* does,
        saying each stage as it starts; returns what the run did."""

        def started(line: str) -> None:
            if line.endswith(RUNNING):
                print(f"{month}: {line.split()[0]} ...", flush=True)

        with temporary_environ(self.env()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Dagster's beta and preview notices
            with self.instance() as dagster:
                return execute(month, month, dagster, progress=started)

    @contextmanager
    def instance(self) -> Iterator:
        from dagster import DagsterInstance

        home = prepare_home(self.dagster_home)
        with DagsterInstance.from_config(str(home)) as dagster:
            yield dagster

    def events(self, outcome: RunOutcome) -> pd.DataFrame:
        """The run's events a person reads in the UI's run view, in order, without times."""
        wanted = {
            "STEP_START": "started",
            "STEP_SUCCESS": "succeeded",
            "STEP_FAILURE": "FAILED",
            "ASSET_MATERIALIZATION": "materialized",
            "ASSET_CHECK_EVALUATION": "check",
        }
        rows = []
        stages = set(assets_table()["asset"])
        with temporary_environ(self.env()), self.instance() as dagster:
            for entry in dagster.all_logs(outcome.run_id):
                event = entry.dagster_event
                if event is None or event.event_type_value not in wanted:
                    continue
                if event.step_key not in stages and event.event_type_value.startswith("STEP_"):
                    continue  # a check's own step: its evaluation says all
                rows.append(
                    {
                        "step": event.step_key,
                        "event": event.event_type_value,
                        "what": _what(event, wanted[event.event_type_value]),
                    }
                )
        return pd.DataFrame(rows)

    def materialized(self) -> pd.DataFrame:
        """Each asset and the partitions this sandbox's instance has materialized."""
        from dagster import AssetKey

        with temporary_environ(self.env()), self.instance() as dagster:
            return pd.DataFrame(
                [
                    {
                        "asset": asset,
                        "materialized partitions": ", ".join(
                            sorted(dagster.get_materialized_partitions(AssetKey(asset)))
                        )
                        or "none",
                    }
                    for asset in assets_table()["asset"]
                ]
            )

    def recorded_notebooks(self, outcome: RunOutcome) -> list[str]:
        """The notebooks the run kept (names; the folder is in :attr:`RunOutcome.notebooks`)."""
        return sorted(p.name for p in outcome.notebooks.glob("*.ipynb"))


def _what(event, label: str) -> str:
    data = event.event_specific_data
    if event.event_type_value == "ASSET_MATERIALIZATION":
        materialization = data.materialization
        return f"{materialization.asset_key.to_user_string()} {materialization.partition}"
    if event.event_type_value == "ASSET_CHECK_EVALUATION":
        return f"{data.check_name}: {'passed' if data.passed else 'FAILED'}"
    if event.event_type_value == "STEP_FAILURE":
        failure = data.user_failure_data
        text = failure.description if failure else data.error.message
        return " ".join(text.splitlines()[:2])
    return label


def open_sandbox(settings: Settings, months: list[str]) -> Sandbox:
    """A new sandbox in a temporary folder (removed when the kernel ends), whose good
    deliveries come from the settings' deliveries or the reference ones beside the repository."""
    source = find_deliveries(months, settings.data_dir)
    folder = tempfile.TemporaryDirectory(prefix="hdb-orchestrate-", ignore_cleanup_errors=True)
    made = Sandbox(Path(folder.name), source)
    made.deliveries_dir.mkdir()
    _KEEP.append(folder)  # removed at exit, with the kernel
    return made


_KEEP: list[tempfile.TemporaryDirectory] = []


def run_summary(outcome: RunOutcome) -> str:
    """A run's verdict, stage by stage, with its checks (no ids or timings: they change)."""
    lines = [f"Run of partition {outcome.window}: {'success' if outcome.success else 'FAILED'}"]
    lines += outcome.step_lines()
    if outcome.failure:
        # What failed, and the notebook's own error (the executed notebook's path left out).
        lines += ["  " + line for line in outcome.failure.splitlines()[:2]]
    return "\n".join(lines)
