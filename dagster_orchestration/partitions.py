"""Monthly partitions, one per registration month, from the dataset's first month to now."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from zoneinfo import ZoneInfo

from dagster import BackfillPolicy, MonthlyPartitionsDefinition

from dagster_orchestration.constants import FIRST_MONTH, TIMEZONE
from hdb_elt.months import Month, MonthError

# Keys are the project's months ("2023-07"). end_offset=1 adds the current month, which
# data.gov.sg keeps filling: Dagster's default stops at the last complete one.
monthly_partitions = MonthlyPartitionsDefinition(
    start_date=FIRST_MONTH, fmt="%Y-%m", timezone=TIMEZONE, end_offset=1
)

# An asset backfill (the UI's "Materialize" over many months, or the backfill daemon) runs its
# months as ranges, up to this many months per run, in order: each run pays the start-up of
# five kernels, Meltano and dbt once for its whole range, so the history since 1990 (~430
# months) is eight runs, not 430. A single month stays its own run; a bad month fails the run
# of its range, and the stage that stopped names it (file, row, rule) in the run's recorded
# notebook. A job backfill (the job's partition set) ignores this policy: one run per month.
MONTHS_PER_BACKFILL_RUN = 60
backfill_in_ranges = BackfillPolicy.multi_run(max_partitions_per_run=MONTHS_PER_BACKFILL_RUN)

PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def run_months(tags: Mapping[str, str]) -> tuple[str, str]:
    """The window (first and last month) of a run, from its partition tag or partition range.

    This is how the partition reaches a notebook: dagstermill's context has no partition key,
    but the run's tags do, and the months are handed to the notebook as its parameters.
    """
    if PARTITION_TAG in tags:
        return tags[PARTITION_TAG], tags[PARTITION_TAG]
    if RANGE_START_TAG in tags and RANGE_END_TAG in tags:
        return tags[RANGE_START_TAG], tags[RANGE_END_TAG]
    raise ValueError(
        "This run has no partition: pick a month (or a range of months) to materialize, "
        "for example 2023-07."
    )


def is_partition(month: str, today: date | None = None) -> bool:
    """Whether ``month`` (``YYYY-MM``) is a partition: the dataset's first month to this one."""
    try:
        parsed = Month.parse(month)
    except MonthError:
        return False
    today = today or datetime.now(ZoneInfo(TIMEZONE)).date()
    return Month.parse(FIRST_MONTH) <= parsed <= Month.of(today)
