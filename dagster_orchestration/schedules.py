"""The schedule: re-run the previous and the current month, which data.gov.sg keeps filling."""

# No `from __future__ import annotations` here: Dagster reads the types of a check's or
# sensor's parameters (its context, its resources) when it is defined.

from dagster import RunRequest, ScheduleEvaluationContext, schedule

from dagster_orchestration.constants import SCHEDULE_CRON, SCHEDULE_MONTHS_BACK, TIMEZONE
from dagster_orchestration.jobs import monthly_pipeline
from hdb_elt.months import Month


def scheduled_months(day) -> list[str]:
    """The months a tick on ``day`` re-runs: the current one and ``SCHEDULE_MONTHS_BACK`` before."""
    current = Month.of(day)
    return [str(current.shift(-back)) for back in range(SCHEDULE_MONTHS_BACK, -1, -1)]


@schedule(
    cron_schedule=SCHEDULE_CRON,
    job=monthly_pipeline,
    execution_timezone=TIMEZONE,
    description="On the 28th of every month at 06:00 Singapore time, re-run the previous and "
    "the current month (daily instead: set SCHEDULE_CRON to '0 6 * * *' in constants.py).",
)
def monthly_refresh(context: ScheduleEvaluationContext):
    tick = context.scheduled_execution_time
    for month in scheduled_months(tick):
        yield RunRequest(
            run_key=f"{month}@{tick:%Y-%m-%d}",
            partition_key=month,
            tags={"hdb_elt/trigger": "schedule"},
        )
