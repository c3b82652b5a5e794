"""Reading the raw rows the gate checks: each month's latest accepted delivery, and why a
window has nothing to read (every delivery of a month rejected by the gate) when it has not."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

from hdb_elt.months import Month
from hdb_elt.validation.locations import describe_source
from hdb_elt.warehouse import (
    LATEST_DELIVERIES,
    RAW_TABLE,
    REJECTED_DELIVERIES,
    connect,
    ensure_latest_deliveries,
    query_df,
)


class DataQualityError(Exception):
    """Base class of the validate stage's errors."""


class NothingToValidate(DataQualityError):
    """The warehouse holds no rows for the window asked for."""


class RejectedDeliveriesWarning(UserWarning):
    """Months of a window have only deliveries the gate rejected: nothing of them is read."""


def read_deliveries(
    warehouse_path: Path, start_month: str | Month, end_month: str | Month
) -> pd.DataFrame:
    """What the gate checks for a window: the latest accepted delivery of each of its months
    (``raw.latest_deliveries``), plus any rows of those same loads whose month is not a month
    at all.

    Staging reads the first part. The second catches a delivery carrying rows such as
    ``2023-13``, which belong to no window and so would otherwise never be seen.
    """
    start, end = str(Month.parse(str(start_month))), str(Month.parse(str(end_month)))
    ensure_latest_deliveries(warehouse_path)
    valid = "regexp_full_match(month, '\\d{4}-(0[1-9]|1[0-2])')"
    rows = query_df(
        warehouse_path,
        f"""with latest as (
                select * from {LATEST_DELIVERIES}
                where month between $1 and $2 and {valid}
            ),
            stray as (
                select * from {RAW_TABLE}
                where _load_id in (select distinct _load_id from latest)
                  and not coalesce({valid}, false)
            )
            select * from (select * from latest union all select * from stray)
            order by month, _source, _source_row""",
        [start, end],
        arrow=True,
    )
    if rows.empty:
        raise NothingToValidate(_nothing_in_window(warehouse_path, start, end))
    _warn_of_rejected_months(warehouse_path, start, end)
    return rows


def _rejected_only(warehouse_path: Path, start: str, end: str) -> list[str]:
    """One line per rejected delivery of the window's months that have no accepted delivery
    left: month, load, file (and whether it is still there), rule, time and what was found."""
    with connect(warehouse_path, read_only=True) as con:
        rejected = con.execute(
            f"""select r.month, r._load_id, r.rule, r.detail, r.rejected_at,
                    (select min(d._source) from {RAW_TABLE} as d
                     where d._load_id = r._load_id and d.month = r.month) as source
                from {REJECTED_DELIVERIES} as r
                where r.month between ? and ?
                    and r.month not in (select distinct month from {LATEST_DELIVERIES})
                order by r.month, r.rejected_at""",
            [start, end],
        ).fetchall()
    return [
        f"  - {month}: load {load_id} (file {describe_source(source)}), rejected "
        f"{rejected_at:%Y-%m-%d %H:%M:%S} UTC by rule {rule}: {detail}"
        for month, load_id, rule, detail, rejected_at, source in rejected
    ]


_DELIVER_AGAIN = (
    "Deliver a corrected file for the month (put it in the deliveries folder and run "
    "extract-load), then validate again."
)


def _nothing_in_window(warehouse_path: Path, start: str, end: str) -> str:
    """Why a window has no rows to validate: nothing delivered, or every delivery of its
    months rejected by the gate (then each is named, with its file, rule and time)."""
    lines = _rejected_only(warehouse_path, start, end)
    if not lines:
        return (
            f"No rows for {start}..{end} in {RAW_TABLE}: run the extract-load stage for that "
            "window first."
        )
    return (
        f"Nothing to validate for {start}..{end}: the only deliveries of these months were "
        f"rejected by the gate ({REJECTED_DELIVERIES}), and no accepted delivery is left to "
        "fall back on:\n" + "\n".join(lines) + "\n" + _DELIVER_AGAIN
    )


def _warn_of_rejected_months(warehouse_path: Path, start: str, end: str) -> None:
    """Say so when some months of the window are left with only rejected deliveries: the
    others are validated, these have nothing to validate."""
    lines = _rejected_only(warehouse_path, start, end)
    if lines:
        warnings.warn(
            RejectedDeliveriesWarning(
                f"Some months of {start}..{end} have no accepted delivery, only deliveries "
                f"the gate rejected ({REJECTED_DELIVERIES}); they are not validated, and "
                "downstream has nothing of them:\n" + "\n".join(lines) + "\n" + _DELIVER_AGAIN
            ),
            stacklevel=3,
        )
