"""Run the pipeline through Dagster, headless: ``make run`` and the benchmark use this.

The job runs in this process against the project's Dagster instance (``DAGSTER_HOME``,
``.dagster_home/`` by default), so every run, its checks and its recorded notebooks show up
later in ``make dev``. By default the window is one run over the range of its monthly
partitions: Dagster marks each month materialized, and the notebooks start once instead of
once per month. ``per_month=True`` starts one run per month, as a backfill from the UI does.

    python -m dagster_orchestration.run                # the configured window, one run
    python -m dagster_orchestration.run --per-month    # one run per month
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dagster_orchestration.constants import records_dir
from dagster_orchestration.home import prepare_home
from dagster_orchestration.partitions import (
    PARTITION_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    is_partition,
)
from dagster_orchestration.records import run_folder, window_label
from hdb_elt.settings import Settings, SettingsError, display_path, load_settings

STAGE_ORDER = ("extract_load", "validate", "transform", "test", "report")
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
            f"{', '.join(outside)}: not a monthly partition (the dataset starts in 2017-01 and "
            "the last partition is the current month). Set HDB_START_MONTH/HDB_END_MONTH inside."
        )
    return [(m, m) for m in months] if per_month else [(months[0], months[-1])]


def execute(start: str, end: str, instance) -> RunOutcome:
    """Run the job for ``start``..``end`` in this process; never raises for a failed stage."""
    from dagster import DagsterEventType, execute_job, reconstructable

    from dagster_orchestration.definitions import pipeline_job

    started = time.perf_counter()
    result = execute_job(
        reconstructable(pipeline_job),
        instance=instance,
        run_config=QUIET,
        tags=partition_tags(start, end),
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
    settings: Settings, *, per_month: bool = False, instance=None
) -> Iterator[RunOutcome]:
    """Run the window (one run, or one per month), yielding each run as it ends; the runs
    after a failed one still run (each month stands alone)."""
    from dagster import DagsterInstance

    # The notebooks' kernels and the processes they start read the settings from here.
    os.environ.update(settings.child_env())
    os.environ.setdefault("TQDM_DISABLE", "1")  # papermill's progress bars, in a headless run
    planned = windows(settings, per_month)
    if instance is None:
        prepare_home()
        with DagsterInstance.get() as owned:
            for start, end in planned:
                yield execute(start, end, owned)
    else:
        for start, end in planned:
            yield execute(start, end, instance)


def describe(outcome: RunOutcome, out: Callable[[str], None] = print) -> None:
    out(
        f"Run {outcome.run_id[:8]} ({outcome.window}): {'success' if outcome.success else 'FAILED'}"
        f" in {outcome.seconds:.1f} s"
    )
    for step in outcome.steps:
        checks = {
            name.split(".", 1)[1]: passed
            for name, passed in outcome.checks.items()
            if name.startswith(f"{step.step}.")
        }
        shown = ", ".join(f"{n} {'passed' if ok else 'FAILED'}" for n, ok in checks.items())
        seconds = f"{step.seconds:5.1f} s" if step.seconds is not None else "       "
        out(
            f"  {step.step:<13} {step.status:<8} {seconds}"
            + (f"  checks: {shown}" if shown else "")
        )
    if outcome.failure:
        out("\n" + outcome.failure)
    out(f"  executed notebooks: {display_path(outcome.notebooks)}/ (.ipynb and .html)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dagster_orchestration.run", description=__doc__
    )
    parser.add_argument("--per-month", action="store_true", help="one run per month")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        from hdb_elt.pipeline import run_pipeline

        return run_pipeline(settings, per_month=args.per_month)
    except SettingsError as exc:
        print(f"Settings error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
