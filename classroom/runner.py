"""Run the pipeline through Dagster, headless: ``make run`` (``run_pipeline``) and the bench.

The job runs in this process against the project's Dagster instance (``DAGSTER_HOME``,
``.dagster_home/`` by default), so every run, its checks and its recorded notebooks show up
later in ``make dev``. By default the window is one run over the range of its monthly
partitions: Dagster marks each month materialized, and the notebooks start once instead of
once per month. ``per_month=True`` starts one run per month, as the job's backfill does.

    python -m classroom.runner                # the configured window, one run
    python -m classroom.runner --per-month    # one run per month
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, RunsFilter, execute_job, reconstructable

from dagster_orchestration.constants import FIRST_MONTH, records_dir
from dagster_orchestration.definitions import pipeline_job
from dagster_orchestration.home import prepare_home
from dagster_orchestration.partitions import (
    PARTITION_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    is_partition,
)
from dagster_orchestration.records import run_folder, window_label
from hdb_elt.extract_load import latest_delivery_counts
from hdb_elt.settings import (
    Settings,
    SettingsError,
    display_path,
    load_settings,
    temporary_environ,
)
from hdb_elt.stage_notebooks import STAGE_NAMES
from hdb_elt.warehouse import connect

STAGE_ORDER = STAGE_NAMES  # the steps of a run, in pipeline order
# Dagster's console logger would print every event (and each failure three times); the
# summary says what matters, and the UI (make dev) has every event of the run.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass
class StepOutcome:
    step: str
    status: str  # "success", "failure" or "skipped"
    seconds: float | None = None


@dataclass
class RunOutcome:
    """What one Dagster run did, read back from the instance."""

    run_id: str
    window: str
    success: bool
    seconds: float
    notebooks: Path
    steps: list[StepOutcome] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)  # "asset.check": passed
    failure: str | None = None
    # What a stage's materialization warned about (extract-load: the tap's warnings).
    warnings: dict[str, list[str]] = field(default_factory=dict)

    def step_checks(self, step: str) -> list[str]:
        """The checks of one stage's asset, each as "<check> passed" or "<check> FAILED"."""
        return [
            f"{name.split('.', 1)[1]} {'passed' if passed else 'FAILED'}"
            for name, passed in self.checks.items()
            if name.startswith(f"{step}.")
        ]

    def step_lines(self) -> list[str]:
        """Each stage's status and checks, a line each, without timings (they change from run
        to run): what notebook 06 and exercise 05 show of a run."""
        lines = []
        for step in self.steps:
            checks = self.step_checks(step.step)
            lines.append(
                f"  {step.step:<13} {step.status:<8}"
                + (f" checks: {', '.join(checks)}" if checks else "")
            )
        return lines


def partition_tags(start: str, end: str) -> dict[str, str]:
    if start == end:
        return {PARTITION_TAG: start}
    return {RANGE_START_TAG: start, RANGE_END_TAG: end}


def windows(settings: Settings, per_month: bool) -> list[tuple[str, str]]:
    """The (first, last) months of each run; refuses months that are not partitions."""
    months = [str(m) for m in settings.months]
    outside = [m for m in months if not is_partition(m)]
    if outside:
        raise SettingsError(
            f"{', '.join(outside)}: not a monthly partition (the dataset starts in "
            f"{FIRST_MONTH} and the last partition is the current month). Set "
            "HDB_START_MONTH/HDB_END_MONTH inside."
        )
    return [(m, m) for m in months] if per_month else [(months[0], months[-1])]


PROGRESS_TAG = "hdb/progress"
RUNNING = "running..."


class StageProgress:
    """Says each stage of a run as it starts and ends, with its checks, while the run executes
    in this process: a thread reads the run's events from the instance every half second (the
    console logger stays quiet; this says only what a person waiting wants to know)."""

    def __init__(self, instance, token: str, out: Callable[[str], None]) -> None:
        self.instance, self.token, self.out = instance, token, out
        self.run_id: str | None = None
        self.cursor: str | None = None
        self.started: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> StageProgress:
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stop.set()
        self.thread.join()
        self.poll()  # the last events

    def _watch(self) -> None:
        while not self.stop.wait(0.5):
            try:
                self.poll()
            except Exception:  # progress is a courtesy: never let it fail the run
                return

    def poll(self) -> None:

        if self.run_id is None:
            ids = self.instance.get_run_ids(RunsFilter(tags={PROGRESS_TAG: self.token}), limit=1)
            if not ids:
                return
            self.run_id = ids[0]
        wanted = {
            DagsterEventType.STEP_START,
            DagsterEventType.STEP_SUCCESS,
            DagsterEventType.STEP_FAILURE,
            DagsterEventType.ASSET_CHECK_EVALUATION,
        }
        found = self.instance.get_records_for_run(self.run_id, self.cursor, of_type=wanted)
        self.cursor = found.cursor
        for record in found.records:
            entry = record.event_log_entry
            self.say(entry.dagster_event, entry.timestamp)

    def say(self, event, timestamp: float) -> None:
        step = event.step_key
        kind = event.event_type_value
        if kind == "ASSET_CHECK_EVALUATION":
            check = event.event_specific_data
            verdict = "passed" if check.passed else "FAILED"
            self.out(f"  {'':<13} check {check.check_name} {verdict}")
        elif step not in STAGE_ORDER:
            return
        elif kind == "STEP_START":
            self.started[step] = timestamp
            self.out(f"  {step:<13} {RUNNING}")
        else:
            status = "success" if kind == "STEP_SUCCESS" else "FAILED"
            seconds = timestamp - self.started.get(step, timestamp)
            self.out(f"  {step:<13} {status:<8} {seconds:5.1f} s")


def run_config(settings: Settings | None) -> dict:
    """The job's run config: Dagster's console quiet, and the settings resource pointed at the
    settings' warehouse and deliveries (None: as the environment says, when the run starts)."""
    config: dict = dict(QUIET)
    if settings is not None:
        where = {"warehouse_path": str(settings.warehouse_path)}
        if settings.data_dir is not None:
            where["data_dir"] = str(settings.data_dir)
        config["resources"] = {"settings": {"config": where}}
    return config


def execute(
    start: str,
    end: str,
    instance,
    progress: Callable[[str], None] | None = None,
    settings: Settings | None = None,
) -> RunOutcome:
    """Run the job for ``start``..``end`` in this process; never raises for a failed stage.
    With ``progress``, each stage is said as it starts and ends. The months reach the run
    only through its partition tags; ``settings`` (if given) name its warehouse and deliveries.
    """

    started = time.perf_counter()
    token = uuid.uuid4().hex
    tags = {**partition_tags(start, end), PROGRESS_TAG: token}
    if progress is not None:
        progress(f"Run over {window_label(start, end)}: started")
    with StageProgress(instance, token, progress) if progress else nullcontext():
        result = execute_job(
            reconstructable(pipeline_job),
            instance=instance,
            run_config=run_config(settings),
            tags=tags,
            raise_on_error=False,
        )
    window = window_label(start, end)
    outcome = RunOutcome(
        run_id=result.run_id,
        window=window,
        success=result.success,
        seconds=time.perf_counter() - started,
        notebooks=run_folder(records_dir(), instance, result.run_id, window),
    )
    stats = {s.step_key: s for s in instance.get_run_step_stats(result.run_id)}
    for event in result.all_events:
        if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            check = event.event_specific_data
            outcome.checks[f"{check.asset_key.to_user_string()}.{check.check_name}"] = check.passed
        elif event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.event_specific_data.materialization
            said = materialization.metadata.get("warnings")
            text = getattr(said, "value", None) or ""
            found = [line[2:] for line in text.splitlines() if line.startswith("- ")]
            if found:
                outcome.warnings[materialization.asset_key.to_user_string()] = found
        elif event.event_type == DagsterEventType.STEP_FAILURE and event.step_key in STAGE_ORDER:
            error = event.event_specific_data
            data = error.user_failure_data
            outcome.failure = data.description if data else error.error.message
    for step in STAGE_ORDER:
        stat = stats.get(step)
        if stat is None or stat.end_time is None:
            outcome.steps.append(StepOutcome(step, "skipped"))
        else:
            outcome.steps.append(
                StepOutcome(step, stat.status.value.lower(), stat.end_time - stat.start_time)
            )
    return outcome


def run_windows(
    settings: Settings,
    *,
    per_month: bool = False,
    instance=None,
    progress: Callable[[str], None] | None = None,
) -> Iterator[RunOutcome]:
    """Run the window (one run, or one per month), yielding each run as it ends; the runs
    after a failed one still run (each month stands alone). ``progress`` hears each stage as
    it starts and ends."""

    planned = windows(settings, per_month)
    # Each run's months travel in its partition tags, its warehouse and deliveries in the
    # settings resource's config (run_config); nothing about the window is put in os.environ.
    # papermill's progress bars stay off in a headless run.
    quiet = {"TQDM_DISABLE": os.environ.get("TQDM_DISABLE", "1")}
    with temporary_environ(quiet), _instance(instance) as dagster:
        for start, end in planned:
            yield execute(start, end, dagster, progress, settings)


@contextmanager
def _instance(instance) -> Iterator:
    """``instance`` as it is, or the project's own instance (``DAGSTER_HOME``) for the block."""
    if instance is not None:
        yield instance
        return
    prepare_home()
    with DagsterInstance.get() as owned:
        yield owned


def describe(outcome: RunOutcome, out: Callable[[str], None] = print) -> None:
    out(
        f"Run {outcome.run_id[:8]} ({outcome.window}): {'success' if outcome.success else 'FAILED'}"
        f" in {outcome.seconds:.1f} s"
    )
    for step in outcome.steps:
        shown = ", ".join(outcome.step_checks(step.step))
        seconds = f"{step.seconds:5.1f} s" if step.seconds is not None else "       "
        out(
            f"  {step.step:<13} {step.status:<8} {seconds}"
            + (f"  checks: {shown}" if shown else "")
        )
        for warning in outcome.warnings.get(step.step, []):
            out(f"      warning: {warning}")
    if outcome.failure:
        out("\n" + outcome.failure)
    out(f"  executed notebooks: {display_path(outcome.notebooks)}/ (.ipynb and .html)")


def mart_counts(settings: Settings) -> tuple[int, int]:
    """Sales and distinct transaction ids in the fact table for the window."""
    with connect(settings.warehouse_path, read_only=True) as con:
        return con.execute(
            "select count(*), count(distinct transaction_id) from marts.fct_resale_transactions "
            "where month_key between ? and ?",
            [str(settings.start_month), str(settings.end_month)],
        ).fetchone()


def _say(line: str) -> None:
    print(line, flush=True)  # as it happens, also when the output is a pipe (CI, a log)


def run_pipeline(settings: Settings, *, per_month: bool = False) -> int:
    """Run every stage for the window through Dagster and print a summary; returns an exit
    code. ``per_month`` starts one run per month (as the job's backfill does) instead of one run."""
    started = time.perf_counter()
    print(f"Pipeline: {settings.describe()}")
    print(f"Dagster instance: {display_path(prepare_home())}/ (see the runs with make dev)\n")
    failed = 0
    for outcome in run_windows(settings, per_month=per_month, progress=_say):
        print()
        describe(outcome)
        failed += not outcome.success
    if failed:
        print(f"\n{failed} run(s) failed.")
        return 1
    counts = {
        month: rows
        for month, rows in latest_delivery_counts(settings.warehouse_path).items()
        if str(settings.start_month) <= month <= str(settings.end_month)
    }
    sales, ids = mart_counts(settings)
    print(
        f"\nLatest deliveries in the window: {sum(counts.values()):,} rows in "
        f"{len(counts)} month(s); marts.fct_resale_transactions: {sales:,} sales "
        f"({ids:,} distinct ids)."
    )
    print(f"Report charts and summary: {display_path(settings.warehouse_path.parent / 'report')}/")
    print(f"Done in {time.perf_counter() - started:.1f} s.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m classroom.runner", description=__doc__)
    parser.add_argument("--per-month", action="store_true", help="one run per month")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        return run_pipeline(settings, per_month=args.per_month)
    except SettingsError as exc:
        print(f"Settings error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
