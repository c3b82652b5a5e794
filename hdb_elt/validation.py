"""The validate stage's data-quality gate over the raw rows of a load.

Every rule is a pandera schema: pandera does the checking, and this module maps pandera's
failure cases back to raw rows (``_source``, ``_source_row``) and to rules. Rules come in
four severities:

- ``blocking``: the delivery is broken (a column missing, a value of the wrong type, a month
  that is not a month or outside the window). :func:`raise_if_blocked` stops the run so
  nothing downstream reads it.
- ``quarantine``: one row is implausible. The row is written to ``audit.quarantine`` (raw
  keeps it too) and staging leaves it out; the run goes on, unless more than
  ``max_quarantine_fraction`` of a month's rows are quarantined, which blocks.
- ``warning``: worth a look, rows are kept (a town never seen before: HDB does open towns).
- ``info``: reported, never failing (identical rows, which are real, distinct sales).

The plausible ranges were chosen from the 2023 reference data (25,777 rows, all of which pass
every rule) with wide margins, so that only values no HDB resale can have are quarantined:

- floor area 20 to 400 sqm: 2023 spans 31 (1-room) to 192 sqm; the largest HDB flats
  (executive maisonettes) are under 300 sqm.
- resale price 50,000 to 5,000,000 SGD: 2023 spans 150,000 to 1,500,000; the lower bound
  also rules out zero, negative and thousands-dropped prices, the upper one a stray digit.
- lease commencement 1960 (HDB's founding) to the registration year + 1: 2023 spans 1966 to
  2022; a flat cannot be resold before its lease starts, the margin forgives an off-by-one.
- remaining lease ``NN years MM months``, ``NN years``, a bare number of years (2015-2016),
  or empty (older data has none).

Text rules check values normalised as :mod:`hdb_elt.normalisation` decides (spaces, case,
``MULTI GENERATION``), the spellings staging cleans; messages show the values as delivered.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from hdb_elt.months import Month
from hdb_elt.normalisation import normalise
from hdb_elt.warehouse import (
    LATEST_DELIVERIES,
    RAW_TABLE,
    REJECTED_DELIVERIES,
    SOURCE_COLUMNS,
    connect,
    ensure_latest_deliveries,
)

METADATA_COLUMNS = ("_source", "_source_row", "_load_id")
REQUIRED_COLUMNS = (*SOURCE_COLUMNS, *METADATA_COLUMNS)

KNOWN_FLAT_TYPES = (
    "1 ROOM",
    "2 ROOM",
    "3 ROOM",
    "4 ROOM",
    "5 ROOM",
    "EXECUTIVE",
    "MULTI-GENERATION",
)
# The 26 towns of the 2023 data, plus LIM CHU KANG from older data. TENGAH (new flats from
# 2023) is left out on purpose: its first resales will warn, a reminder to check that
# everything downstream (dim_town, regions) knows it, and then it is added here.
KNOWN_TOWNS = (
    "ANG MO KIO",
    "BEDOK",
    "BISHAN",
    "BUKIT BATOK",
    "BUKIT MERAH",
    "BUKIT PANJANG",
    "BUKIT TIMAH",
    "CENTRAL AREA",
    "CHOA CHU KANG",
    "CLEMENTI",
    "GEYLANG",
    "HOUGANG",
    "JURONG EAST",
    "JURONG WEST",
    "KALLANG/WHAMPOA",
    "LIM CHU KANG",
    "MARINE PARADE",
    "PASIR RIS",
    "PUNGGOL",
    "QUEENSTOWN",
    "SEMBAWANG",
    "SENGKANG",
    "SERANGOON",
    "TAMPINES",
    "TOA PAYOH",
    "WOODLANDS",
    "YISHUN",
)
FLOOR_AREA_SQM_RANGE = (20, 400)
RESALE_PRICE_RANGE = (50_000, 5_000_000)
EARLIEST_LEASE_YEAR = 1960
LEASE_YEAR_MARGIN = 1
DEFAULT_MAX_QUARANTINE_FRACTION = 0.01
SAMPLE_SIZE = 3

MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
NUMBER_PATTERN = r"^-?\d+(\.\d+)?$"
YEAR_PATTERN = r"^\d{4}$"
STOREY_RANGE_PATTERN = r"^\d{2} TO \d{2}$"
# Checked on normalised values (hdb_elt.normalisation): lower case, single spaces. A bare
# number of years is how the 2015-2016 files write it.
REMAINING_LEASE_PATTERN = r"^(\d{1,2}( years?( (0[1-9]|1[01]) months?)?)?)?$"
# Any C0 control character or DEL: no HDB value holds one (NUL, a stray line break...).
CONTROL_CHARACTERS = r"[\x00-\x1f\x7f]"
# A month in which more than this share of rows have an identical twin warns: the real data
# has a handful of twins a month (2023: under 0.5%); a file concatenated with itself has 100%.
MAX_TWIN_SHARE = 0.5
THRESHOLD_RULE = "quarantine_threshold"

RESULT_COLUMNS = ["rule", "severity", "status", "failing_rows", "checked_rows", "sample"]
QUARANTINE_COLUMNS = ["_load_id", "_source", "_source_row", "month", "rule", "detail"]
FAILURE_COLUMNS = [*QUARANTINE_COLUMNS[:4], "rule", "severity", "column", "value", "detail"]


class DataQualityError(Exception):
    """Base class of this module's errors."""


class NothingToValidate(DataQualityError):
    """The warehouse holds no rows for the load or window asked for."""


class RejectedDeliveriesWarning(UserWarning):
    """Months of a window have only deliveries the gate rejected: nothing of them is read."""


class ValidationBlocked(DataQualityError):
    """A blocking rule failed: nothing downstream may run on this delivery."""

    def __init__(self, message: str, report: ValidationReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class Window:
    """The months a run processes, both included."""

    start: Month
    end: Month


@dataclass(frozen=True)
class Rule:
    """One named data-quality rule, checked by a pandera schema.

    ``frame`` says which view of the rows the schema validates: ``"text"`` (the values as
    delivered, missing ones as ``""``) or ``"typed"`` (numbers parsed, unparseable ones
    missing so range rules skip what the type rule already reports). ``columns`` are the raw
    columns a failure is reported against; ``phrase`` says what is wrong with one value.
    """

    name: str
    severity: str
    description: str
    columns: tuple[str, ...]
    schema: Callable[[Window], pa.DataFrameSchema]
    phrase: Callable[[str, str, Mapping[str, object], Window], str]
    frame: str = "text"


@dataclass(frozen=True)
class Failure:
    """One blocking failure: a raw row (or the whole delivery) and what is wrong with it."""

    rule: str
    column: str | None
    phrase: str
    source: str | None = None
    source_row: int | None = None

    def __str__(self) -> str:
        where = _where(self.source, self.source_row)
        column = f"column {self.column}: " if self.column else ""
        location = f"{where}, {column}" if where else column
        return f"{location}{self.phrase} (rule {self.rule}, blocking)."


@dataclass(repr=False)
class ValidationReport:
    """What the gate found in one set of raw rows.

    ``results`` has one row per rule; ``quarantined`` one row per failing row per row-level
    rule (``_source`` exactly as in raw, so staging can leave those rows out);
    ``failures`` every failing row of every rule; ``partitions`` the rows and quarantined
    rows of each (load, month), the unit the quarantine threshold and the audit tables use.
    """

    load_ids: tuple[str, ...]
    start_month: Month
    end_month: Month
    rows_checked: int
    max_quarantine_fraction: float
    results: pd.DataFrame
    quarantined: pd.DataFrame
    blocking_failures: list[Failure]
    failures: pd.DataFrame = field(default_factory=pd.DataFrame)
    partitions: pd.DataFrame = field(default_factory=pd.DataFrame)
    missing_columns: tuple[str, ...] = ()
    # The rules checked: RULES plus any extra ones (see validate_load's extra_rules).
    rules: tuple[Rule, ...] = field(default_factory=lambda: RULES)

    @property
    def load_id(self) -> str:
        """The load validated, or the loads joined with ", " when the rows span several."""
        return ", ".join(self.load_ids)

    @property
    def blocked(self) -> bool:
        return bool(self.blocking_failures)

    @property
    def quarantined_rows(self) -> int:
        """Distinct raw rows failing at least one row-level rule."""
        return len(self.quarantined.drop_duplicates(["_load_id", "_source", "_source_row"]))

    def summary(self) -> str:
        """One deterministic line: rows, quarantined, warnings, and whether the gate blocks."""
        warned = int((self.results["status"] == "warn").sum())
        return (
            f"{self.rows_checked:,} rows checked ({self.start_month}..{self.end_month}): "
            f"{self.quarantined_rows:,} quarantined, {warned} warning(s), "
            + (
                f"BLOCKED by {len(self.blocking_failures):,} failure(s)"
                if self.blocked
                else "passed"
            )
        )

    def __repr__(self) -> str:
        return f"ValidationReport({self.summary()})"


# --- the rules ---------------------------------------------------------------------------


def _column_schema(column: str, *checks: pa.Check) -> Callable[[Window], pa.DataFrameSchema]:
    return lambda _window: pa.DataFrameSchema(
        {column: pa.Column(nullable=True, checks=list(checks))}
    )


def _storey_ascending(values: pd.Series) -> pd.Series:
    bounds = values.str.extract(r"^(\d{2}) TO (\d{2})$").astype("float")
    return bounds[0].isna() | (bounds[0] <= bounds[1])


def _lease_in_range(frame: pd.DataFrame) -> pd.Series:
    lease = frame["lease_commence_date"]
    latest = frame["registration_year"] + LEASE_YEAR_MARGIN
    return lease.isna() | ((lease >= EARLIEST_LEASE_YEAR) & (lease <= latest))


def _range_phrase(low: float, high: float) -> Callable[[str, str, Mapping, Window], str]:
    def phrase(column: str, value: str, row: Mapping, window: Window) -> str:
        side = f"below {low:,}" if float(value) < low else f"above {high:,}"
        return f"{value!r} is {side}"

    return phrase


def _types_phrase(column: str, value: str, row: Mapping, window: Window) -> str:
    if column == "lease_commence_date":
        return f"{value!r} is not a year (expected four digits, for example 1985)"
    return f"{value!r} is not a number"


def _storey_phrase(column: str, value: str, row: Mapping, window: Window) -> str:
    if re.match(STOREY_RANGE_PATTERN, value):
        return f"{value!r} runs downwards (lower storey above upper)"
    return f"{value!r} does not match 'NN TO NN'"


def _lease_phrase(column: str, value: str, row: Mapping, window: Window) -> str:
    if int(value) < EARLIEST_LEASE_YEAR:
        return f"{value!r} is before {EARLIEST_LEASE_YEAR}, when HDB was founded"
    year = int(row["registration_year"])
    return (
        f"{value!r} is after {year + LEASE_YEAR_MARGIN} "
        f"(registration year {year} + {LEASE_YEAR_MARGIN})"
    )


def _identical_phrase(column: str, value: str, row: Mapping, window: Window) -> str:
    same_file = row["first_source"] == row["_source"]
    first = (
        f"line {int(row['first_row'])}"
        if same_file
        else _where(row["first_source"], row["first_row"])
    )
    return f"identical in every source column to {first} (kept: a distinct sale)"


def _control_phrase(column: str, value: str, row: Mapping, window: Window) -> str:
    found = sorted({f"U+{ord(c):04X}" for c in re.findall(CONTROL_CHARACTERS, value)})
    return f"{value!r} holds control character(s) {', '.join(found)}"


def _twin_share_phrase(column: str, value: str, row: Mapping, window: Window) -> str:
    return (
        f"month {row['month']}: {row['twin_share']:.1%} of the delivery's rows have an "
        f"identical twin, more than {MAX_TWIN_SHARE:.0%} (a file concatenated with itself?); "
        "this row repeats an earlier one (kept)"
    )


RULES: tuple[Rule, ...] = (
    Rule(
        "columns_present",
        "blocking",
        "every source column and _source, _source_row, _load_id are present",
        REQUIRED_COLUMNS,
        lambda _window: pa.DataFrameSchema({c: pa.Column(nullable=True) for c in REQUIRED_COLUMNS}),
        lambda column, value, row, window: "missing from the delivery",
    ),
    Rule(
        "types_parse",
        "blocking",
        "floor_area_sqm and resale_price are numbers, lease_commence_date a four-digit year",
        ("floor_area_sqm", "resale_price", "lease_commence_date"),
        lambda _window: pa.DataFrameSchema(
            {
                "floor_area_sqm": pa.Column(checks=pa.Check.str_matches(NUMBER_PATTERN)),
                "resale_price": pa.Column(checks=pa.Check.str_matches(NUMBER_PATTERN)),
                "lease_commence_date": pa.Column(checks=pa.Check.str_matches(YEAR_PATTERN)),
            }
        ),
        _types_phrase,
    ),
    Rule(
        "month_format",
        "blocking",
        "month is YYYY-MM with a month part 01 to 12",
        ("month",),
        _column_schema("month", pa.Check.str_matches(MONTH_PATTERN)),
        lambda column, value, row, window: (
            f"{value!r} is not a month (expected YYYY-MM, for example 2023-07)"
        ),
    ),
    Rule(
        "month_in_window",
        "blocking",
        "month is inside the run's window [start_month, end_month]",
        ("month",),
        lambda window: pa.DataFrameSchema(
            {
                "month": pa.Column(
                    nullable=True, checks=pa.Check.in_range(str(window.start), str(window.end))
                )
            }
        ),
        lambda column, value, row, window: (
            f"{value!r} is outside the window {window.start}..{window.end}"
        ),
        frame="typed",
    ),
    Rule(
        "flat_type_known",
        "quarantine",
        "flat_type is one of " + ", ".join(KNOWN_FLAT_TYPES),
        ("flat_type",),
        _column_schema("flat_type", pa.Check.isin(KNOWN_FLAT_TYPES)),
        lambda column, value, row, window: f"{value!r} is not a known flat type",
    ),
    Rule(
        "storey_range_format",
        "quarantine",
        "storey_range is 'NN TO NN' with the lower storey first",
        ("storey_range",),
        _column_schema(
            "storey_range",
            pa.Check.str_matches(STOREY_RANGE_PATTERN),
            pa.Check(_storey_ascending, name="storey_range_ascending"),
        ),
        _storey_phrase,
    ),
    Rule(
        "floor_area_plausible",
        "quarantine",
        "floor_area_sqm is {:,} to {:,}".format(*FLOOR_AREA_SQM_RANGE),
        ("floor_area_sqm",),
        _column_schema("floor_area_sqm", pa.Check.in_range(*FLOOR_AREA_SQM_RANGE)),
        _range_phrase(*FLOOR_AREA_SQM_RANGE),
        frame="typed",
    ),
    Rule(
        "resale_price_plausible",
        "quarantine",
        "resale_price is {:,} to {:,} SGD".format(*RESALE_PRICE_RANGE),
        ("resale_price",),
        _column_schema("resale_price", pa.Check.in_range(*RESALE_PRICE_RANGE)),
        _range_phrase(*RESALE_PRICE_RANGE),
        frame="typed",
    ),
    Rule(
        "lease_year_plausible",
        "quarantine",
        f"lease_commence_date is {EARLIEST_LEASE_YEAR} to the registration year "
        f"+ {LEASE_YEAR_MARGIN}",
        ("lease_commence_date",),
        lambda _window: pa.DataFrameSchema(
            checks=[pa.Check(_lease_in_range, name="lease_year_plausible", ignore_na=False)]
        ),
        _lease_phrase,
        frame="typed",
    ),
    Rule(
        "remaining_lease_format",
        "quarantine",
        "remaining_lease is 'NN years MM months', 'NN years', a number of years or empty",
        ("remaining_lease",),
        _column_schema("remaining_lease", pa.Check.str_matches(REMAINING_LEASE_PATTERN)),
        lambda column, value, row, window: (
            f"{value!r} is not 'NN years MM months', 'NN years', a number of years or empty"
        ),
    ),
    Rule(
        "no_control_characters",
        "quarantine",
        "no value holds a control character (NUL, a line break, a tab...)",
        SOURCE_COLUMNS,
        lambda _window: pa.DataFrameSchema(
            {
                c: pa.Column(
                    nullable=True,
                    checks=pa.Check(
                        lambda s: ~s.str.contains(CONTROL_CHARACTERS, regex=True),
                        name="no_control_characters",
                    ),
                )
                for c in SOURCE_COLUMNS
            }
        ),
        _control_phrase,
    ),
    Rule(
        "town_known",
        "warning",
        "town is a known HDB town (a new one warns; its rows are kept)",
        ("town",),
        _column_schema("town", pa.Check.isin(KNOWN_TOWNS)),
        lambda column, value, row, window: (
            f"{value!r} is not a known HDB town (a new town? add it to KNOWN_TOWNS)"
        ),
    ),
    Rule(
        "identical_rows",
        "info",
        "rows identical in every source column within a delivery and month "
        "(counted, never removed: they are distinct sales)",
        (),
        lambda _window: pa.DataFrameSchema(
            unique=[*SOURCE_COLUMNS, "_load_id"], report_duplicates="exclude_first"
        ),
        _identical_phrase,
    ),
    Rule(
        "identical_rows_share",
        "warning",
        f"at most {MAX_TWIN_SHARE:.0%} of a delivery's rows of a month have an identical twin "
        "(more looks like a file concatenated with itself; the rows are kept)",
        (),
        lambda _window: pa.DataFrameSchema(
            checks=[
                pa.Check(
                    lambda f: ~(f["repeats_earlier"] & (f["twin_share"] > MAX_TWIN_SHARE)),
                    name="identical_rows_share",
                    ignore_na=False,
                )
            ]
        ),
        _twin_share_phrase,
        frame="typed",
    ),
)


def _all_rules(extra_rules: Sequence[Rule]) -> tuple[Rule, ...]:
    """:data:`RULES` and then ``extra_rules``, refusing a rule that is not a Rule or a name
    that is taken (results and audit rows are keyed by rule name)."""
    names = {rule.name for rule in RULES}
    for rule in extra_rules:
        if not isinstance(rule, Rule):
            raise TypeError(
                f"extra_rules holds a {type(rule).__name__}: expected hdb_elt.validation.Rule "
                "objects (see RULES in hdb_elt/validation.py for examples)."
            )
        if rule.name in names or rule.name == THRESHOLD_RULE:
            raise ValueError(
                f"A rule named {rule.name!r} exists already: give the extra rule its own name."
            )
        names.add(rule.name)
    return (*RULES, *extra_rules)


def rules_table(
    max_quarantine_fraction: float = DEFAULT_MAX_QUARANTINE_FRACTION,
    extra_rules: Sequence[Rule] = (),
) -> pd.DataFrame:
    """The rules as a table (rule, severity, description), for a notebook to show."""
    rows = [(r.name, r.severity, r.description) for r in _all_rules(extra_rules)]
    rows.append(
        (
            THRESHOLD_RULE,
            "blocking",
            f"at most {max_quarantine_fraction:.1%} of each month's rows are quarantined",
        )
    )
    return pd.DataFrame(rows, columns=["rule", "severity", "description"])


# --- reading raw rows ----------------------------------------------------------------------


def query_df(path: Path, sql: str, params: list | None = None) -> pd.DataFrame:
    """Run a read-only query into a DataFrame through Arrow, closing the file at once.

    The same frame as DuckDB's ``.df()`` (same dtypes and values), in a quarter of the time
    and two thirds of the memory at a million rows: raw rows are all text, which Arrow hands
    to pandas' string columns without building a Python object per value.
    """
    with connect(path, read_only=True) as con:
        return con.sql(sql, params=params or []).to_arrow_table().to_pandas()


def latest_load_id(warehouse_path: Path) -> str:
    """The id of the most recent load (greatest ``_loaded_at``) in ``raw.resale_flat_prices``."""
    found = query_df(
        warehouse_path,
        f"select _load_id from {RAW_TABLE} order by _loaded_at desc, _load_id desc limit 1",
    )
    if found.empty:
        raise NothingToValidate(
            f"{RAW_TABLE} is empty: run the extract-load stage first "
            "(make run, or the 01 notebook)."
        )
    return str(found.iloc[0, 0])


def read_load(warehouse_path: Path, load_id: str | None = None) -> pd.DataFrame:
    """Every raw row of one load (default: the latest), in delivery order, read-only."""
    load_id = load_id or latest_load_id(warehouse_path)
    rows = query_df(
        warehouse_path,
        f"select * from {RAW_TABLE} where _load_id = ? order by month, _source, _source_row",
        [load_id],
    )
    if rows.empty:
        raise NothingToValidate(
            f"No rows of load {load_id!r} in {RAW_TABLE}: check the id (raw._loads lists them)."
        )
    return rows


def read_window(
    warehouse_path: Path, start_month: str | Month, end_month: str | Month
) -> pd.DataFrame:
    """The latest accepted delivery of each month in the window (``raw.latest_deliveries``):
    the rows staging will read.

    Rows whose month is not a ``YYYY-MM`` month cannot belong to a window; validate the
    load they came with (:func:`read_load`) to see them.
    """
    start, end = str(Month.parse(str(start_month))), str(Month.parse(str(end_month)))
    ensure_latest_deliveries(warehouse_path)
    rows = query_df(
        warehouse_path,
        f"""select * from {LATEST_DELIVERIES}
            where month between ? and ?
            order by month, _source, _source_row""",
        [start, end],
    )
    if rows.empty:
        raise NothingToValidate(_nothing_in_window(warehouse_path, start, end))
    _warn_of_rejected_months(warehouse_path, start, end)
    return rows


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
        f"  - {month}: load {load_id} (file {_describe_source(source)}), rejected "
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


def quarantined_sample(report: ValidationReport, rows: int = 10) -> pd.DataFrame:
    """The first quarantined rows as a person reads them: file, line, rule and why."""
    columns = ["file", "line", "month", "rule", "detail"]
    if report.quarantined.empty:
        return pd.DataFrame(columns=columns)
    frame = report.quarantined.assign(
        file=report.quarantined["_source"].map(lambda s: Path(str(s)).name),
        line=report.quarantined["_source_row"],
    )
    return frame.sort_values(["file", "line", "rule"])[columns].head(rows).reset_index(drop=True)


# --- validating ----------------------------------------------------------------------------


def _text_frame(rows: pd.DataFrame) -> pd.DataFrame:
    text = pd.DataFrame(index=pd.RangeIndex(len(rows)))
    for column in REQUIRED_COLUMNS:
        if column == "_source_row":
            text[column] = pd.to_numeric(rows[column], errors="coerce").to_numpy()
        else:
            text[column] = rows[column].astype("string").fillna("").to_numpy()
    return text


def _typed_frame(text: pd.DataFrame, window: Window) -> pd.DataFrame:
    def number(column: str, pattern: str) -> pd.Series:
        values = text[column].where(text[column].str.match(pattern))
        return pd.to_numeric(values, errors="coerce").astype("float64")

    month = text["month"].where(text["month"].str.match(MONTH_PATTERN))
    year = pd.to_numeric(month.str.slice(0, 4), errors="coerce").astype("float64")
    # Identical twins within a delivery and month: the share of rows that have one, per
    # (load, month), and whether a row repeats an earlier one.
    twins = [*SOURCE_COLUMNS, "_load_id"]
    has_twin = text.duplicated(twins, keep=False)
    share = has_twin.groupby([text["_load_id"], text["month"]], sort=False).transform("mean")
    return pd.DataFrame(
        {
            "month": month,
            "registration_year": year.fillna(window.end.year),
            "floor_area_sqm": number("floor_area_sqm", NUMBER_PATTERN),
            "resale_price": number("resale_price", NUMBER_PATTERN),
            "lease_commence_date": number("lease_commence_date", YEAR_PATTERN),
            "repeats_earlier": text.duplicated(twins, keep="first").to_numpy(),
            "twin_share": share.to_numpy(dtype="float64"),
        }
    )


def _missing_columns(rows: pd.DataFrame, window: Window) -> list[str]:
    """The required columns pandera finds missing, in the order of the raw table."""
    try:
        RULES[0].schema(window).validate(rows.head(0), lazy=True)
    except SchemaErrors as errors:
        cases = errors.failure_cases
        found = set(cases.loc[cases["check"] == "column_in_dataframe", "failure_case"])
        return [c for c in REQUIRED_COLUMNS if c in found]
    return []


def _failing_cells(rule: Rule, frame: pd.DataFrame, window: Window) -> pd.DataFrame:
    """(row position, column) of every failure pandera reports for ``rule``, first column first."""
    try:
        rule.schema(window).validate(frame, lazy=True, inplace=True)
    except SchemaErrors as errors:
        cases = errors.failure_cases
    else:
        return pd.DataFrame({"position": pd.Series(dtype="int64"), "column": pd.Series(dtype=str)})
    cases = cases[cases["index"].notna()]
    if rule.columns:
        # A frame-level check reports every column of a failing row: keep the rule's own.
        column = cases["column"].where(cases["column"].isin(rule.columns), rule.columns[0])
        order = column.map({c: i for i, c in enumerate(rule.columns)})
    else:
        column, order = pd.Series(None, index=cases.index, dtype=object), 0
    cells = pd.DataFrame(
        {"position": cases["index"].astype("int64").to_numpy(), "column": column, "order": order}
    )
    return cells.sort_values(["position", "order"]).drop_duplicates(["position", "column"])


def _rule_failures(
    rule: Rule,
    text: pd.DataFrame,
    typed: pd.DataFrame,
    window: Window,
    delivered: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """``rule``'s failures: checked on ``text`` (normalised) or ``typed``, reported with the
    values as ``delivered`` (default: ``text``)."""
    frame = typed if rule.frame == "typed" else text
    cells = _failing_cells(rule, frame, window)
    if cells.empty:
        return pd.DataFrame(columns=FAILURE_COLUMNS)
    delivered = text if delivered is None else delivered
    context = delivered.iloc[cells["position"].to_numpy()].reset_index(drop=True)
    for column in ("registration_year", "twin_share"):
        context[column] = typed[column].iloc[cells["position"]].to_numpy()
    if rule.name == "identical_rows":
        first = text.groupby([*SOURCE_COLUMNS, "_load_id"], sort=False, dropna=False)
        context["first_source"] = (
            first["_source"].transform("first").iloc[cells["position"]].to_numpy()
        )
        context["first_row"] = (
            first["_source_row"].transform("first").iloc[cells["position"]].to_numpy()
        )
    records = []
    for column, row in zip(cells["column"], context.to_dict("records"), strict=True):
        column = None if pd.isna(column) else column
        value = str(row[column]) if column else ""
        phrase = rule.phrase(column, value, row, window)
        records.append(
            {
                "_load_id": row["_load_id"],
                "_source": row["_source"],
                "_source_row": int(row["_source_row"]),
                "month": row["month"],
                "rule": rule.name,
                "severity": rule.severity,
                "column": column,
                "value": value,
                "detail": f"{column} {phrase}" if column else phrase,
            }
        )
    failures = pd.DataFrame.from_records(records, columns=FAILURE_COLUMNS)
    # One row per raw row per rule: several failing columns are joined in one detail.
    return (
        failures.groupby(["_load_id", "_source", "_source_row"], sort=False, as_index=False)
        .agg({**{c: "first" for c in FAILURE_COLUMNS[3:]}, "detail": "; ".join})
        .loc[:, FAILURE_COLUMNS]
    )


def _sample(failures: pd.DataFrame, size: int = SAMPLE_SIZE) -> str:
    """The first few failing rows (by file and line) as JSON, with file names, not paths."""
    ordered = failures.assign(file=failures["_source"].map(_basename)).sort_values(
        ["file", "_source_row"], kind="stable"
    )
    items = []
    for row in ordered.head(size).to_dict("records"):
        item: dict[str, object] = {"file": row["file"], "line": int(row["_source_row"])}
        if row["column"]:
            item[row["column"]] = row["value"]
        else:
            item["detail"] = row["detail"]
        items.append(item)
    return json.dumps(items, ensure_ascii=False)


def _first_quarantined(failures: pd.DataFrame, load_id: str, month: str, size: int = 2) -> str:
    """`` (first: file line N, column: detail, rule R; ...)`` for a partition's quarantined
    rows, so a blocked month names the file, rows and rules to look at."""
    mine = failures[
        (failures["severity"] == "quarantine")
        & (failures["_load_id"] == load_id)
        & (failures["month"] == month)
    ]
    if mine.empty:
        return ""
    mine = mine.assign(file=mine["_source"].map(_basename)).sort_values(
        ["file", "_source_row"], kind="stable"
    )
    shown = [
        f"{_where(f['_source'], f['_source_row'])}: {f['detail']}, rule {f['rule']}"
        for f in mine.head(size).to_dict("records")
    ]
    return f" (first: {'; '.join(shown)}{'; ...' if len(mine) > size else ''})"


def _status(severity: str, failing: int) -> str:
    if severity == "info":
        return "info"
    if failing == 0:
        return "pass"
    return "warn" if severity == "warning" else "fail"


def _partitions(text: pd.DataFrame, quarantined: pd.DataFrame, max_fraction: float) -> pd.DataFrame:
    """Rows and quarantined rows of each (load, month), and whether it is over the threshold."""
    keys = ["_load_id", "month"]
    sizes = text.groupby(keys, dropna=False).size().rename("rows")
    distinct = quarantined.drop_duplicates(["_load_id", "_source", "_source_row"])
    bad = distinct.groupby(keys, dropna=False).size().rename("quarantined_rows")
    parts = sizes.to_frame().join(bad).fillna(0).astype("int64").reset_index()
    parts["quarantined_fraction"] = parts["quarantined_rows"] / parts["rows"]
    parts["over_threshold"] = parts["quarantined_fraction"] > max_fraction
    return parts.sort_values(["month", "_load_id"]).reset_index(drop=True)


def _summarise(
    failures: pd.DataFrame,
    parts: pd.DataFrame,
    max_fraction: float,
    missing: Sequence[str],
    rules: Sequence[Rule] = RULES,
) -> tuple[pd.DataFrame, list[Failure]]:
    """One result row per rule over ``parts`` (the whole report or one of its partitions),
    and a blocking failure for each partition over the quarantine threshold."""
    checked = int(parts["rows"].sum())
    rows = []
    for rule in rules:
        if missing:
            failing = checked if rule.name == "columns_present" else 0
            status = "fail" if rule.name == "columns_present" else "skipped"
            sample = json.dumps([{"column": c} for c in missing]) if failing else "[]"
        else:
            mine = failures[failures["rule"] == rule.name] if len(failures) else failures
            # No failures, no sample: skipping the sort keeps a window of hundreds of clean
            # months fast (record_results summarises every month).
            sample = _sample(mine) if len(mine) else "[]"
            failing, status = len(mine), _status(rule.severity, len(mine))
        rows.append(
            (
                rule.name,
                rule.severity,
                status,
                failing,
                checked if status != "skipped" else 0,
                sample,
            )
        )

    over = parts[parts["over_threshold"]]
    blocking = [
        Failure(
            THRESHOLD_RULE,
            None,
            f"month {p['month']}: {p['quarantined_rows']:,} of {p['rows']:,} rows "
            f"({p['quarantined_fraction']:.1%}) failed row-level rules"
            f"{_first_quarantined(failures, p['_load_id'], p['month'])}, more than "
            f"max_quarantine_fraction {max_fraction:.1%}",
        )
        for p in over.to_dict("records")
    ]
    sample = [
        {"month": p["month"], "quarantined_rows": p["quarantined_rows"], "rows": p["rows"]}
        for p in over.head(SAMPLE_SIZE).to_dict("records")
    ]
    status = "skipped" if missing else ("fail" if blocking else "pass")
    quarantined = int(parts["quarantined_rows"].sum())
    rows.append(
        (
            THRESHOLD_RULE,
            "blocking",
            status,
            quarantined,
            0 if missing else checked,
            json.dumps(sample),
        )
    )
    results = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    return results.astype({"failing_rows": "int64", "checked_rows": "int64"}), blocking


def validate_load(
    rows: pd.DataFrame,
    start_month: str | Month,
    end_month: str | Month,
    *,
    max_quarantine_fraction: float = DEFAULT_MAX_QUARANTINE_FRACTION,
    extra_rules: Sequence[Rule] = (),
) -> ValidationReport:
    """Check raw rows against every rule; pure (no I/O), so a notebook can show each step.

    ``max_quarantine_fraction`` applies to each (load, month) of the rows, the unit the
    orchestrator validates, so a notebook validating the whole window reaches the same
    verdict as the per-month runs (and one bad month is not hidden by eleven good ones).
    ``extra_rules`` are checked after :data:`RULES`, exactly like them: a rule written in a
    notebook (the classroom exercise) joins the gate without editing this module.
    """
    if not 0 <= max_quarantine_fraction <= 1:
        raise ValueError(f"max_quarantine_fraction={max_quarantine_fraction!r}: expected 0 to 1.")
    rules = _all_rules(extra_rules)
    window = Window(Month.parse(str(start_month)), Month.parse(str(end_month)))
    missing = _missing_columns(rows, window)
    text = _text_frame(rows.reindex(columns=list(REQUIRED_COLUMNS)))
    if missing:
        # Nothing else can be checked until the delivery has every column.
        failures = pd.DataFrame(columns=FAILURE_COLUMNS)
        blocking = [Failure("columns_present", c, "missing from the delivery") for c in missing]
    else:
        # Rules judge the values as staging will read them: normalised spellings pass.
        checked = normalise(text)
        typed = _typed_frame(checked, window)
        failures = pd.concat(
            [_rule_failures(rule, checked, typed, window, text) for rule in rules[1:]],
            ignore_index=True,
        )
        first_blocking = (
            failures[failures["severity"] == "blocking"]
            .assign(file=lambda d: d["_source"].map(_basename))
            .sort_values(["file", "_source_row"], kind="stable")
        )
        blocking = [
            Failure(
                f["rule"],
                f["column"],
                f["detail"].removeprefix(f"{f['column']} "),
                f["_source"],
                int(f["_source_row"]),
            )
            for f in first_blocking.to_dict("records")
        ]
    quarantined = (
        failures.loc[failures["severity"] == "quarantine", QUARANTINE_COLUMNS]
        .sort_values(["month", "_source", "_source_row", "rule"])
        .reset_index(drop=True)
    )
    parts = _partitions(text, quarantined, max_quarantine_fraction)
    results, over_threshold = _summarise(failures, parts, max_quarantine_fraction, missing, rules)
    return ValidationReport(
        load_ids=tuple(sorted(set(text["_load_id"]) - {""})),
        start_month=window.start,
        end_month=window.end,
        rows_checked=len(rows),
        max_quarantine_fraction=max_quarantine_fraction,
        results=results,
        quarantined=quarantined,
        blocking_failures=blocking + over_threshold,
        failures=failures.reset_index(drop=True),
        partitions=parts,
        missing_columns=tuple(missing),
        rules=rules,
    )


# --- recording and gating ------------------------------------------------------------------


def rejected_partitions(report: ValidationReport) -> pd.DataFrame:
    """The (load, month) deliveries of a report the gate blocks, with the first blocking rule
    and what it found: ``_load_id``, ``month``, ``rule``, ``detail``.

    A row-level blocking failure rejects its own (load, month); a month over the quarantine
    threshold rejects itself; a missing column, or a row whose month is not a month at all
    (it belongs to no month, only to its load), rejects every month of that load.
    """
    columns = ["_load_id", "month", "rule", "detail"]
    parts = report.partitions
    if not report.blocked or parts.empty:
        return pd.DataFrame(columns=columns)
    if report.missing_columns:
        missing = ", ".join(report.missing_columns)
        return parts.assign(
            rule="columns_present", detail=f"column(s) {missing} missing from the delivery"
        )[columns]
    failures = report.failures
    blocking = failures[failures["severity"] == "blocking"].assign(
        file=lambda d: d["_source"].map(_basename)
    )
    blocking = blocking.sort_values(["file", "_source_row"], kind="stable")
    found: dict[tuple[str, str], tuple[str, str, int]] = {}

    def add(load_id: str, month: str, rule: str, detail: str) -> None:
        rule_, detail_, count = found.get((load_id, month), (rule, detail, 0))
        found[(load_id, month)] = (rule_, detail_, count + 1)

    valid_months = set(parts["month"][parts["month"].str.match(MONTH_PATTERN)])
    for f in blocking.to_dict("records"):
        detail = f"{_where(f['_source'], f['_source_row'])}, {f['detail']}"
        if f["month"] in valid_months:
            add(f["_load_id"], f["month"], f["rule"], detail)
        else:  # a stray row: it condemns the whole load it came with
            for month in parts.loc[parts["_load_id"] == f["_load_id"], "month"]:
                add(f["_load_id"], month, f["rule"], detail)
    for p in parts[parts["over_threshold"]].to_dict("records"):
        add(
            p["_load_id"],
            p["month"],
            THRESHOLD_RULE,
            f"{p['quarantined_rows']:,} of {p['rows']:,} rows "
            f"({p['quarantined_fraction']:.1%}) failed row-level rules, more than "
            f"max_quarantine_fraction {report.max_quarantine_fraction:.1%}",
        )
    records = [
        (load_id, month, rule, detail + (f" (and {count - 1:,} more)" if count > 1 else ""))
        for (load_id, month), (rule, detail, count) in sorted(
            found.items(), key=lambda item: (item[0][1], item[0][0])
        )
    ]
    return pd.DataFrame.from_records(records, columns=columns)


def record_results(warehouse_path: Path, report: ValidationReport) -> None:
    """Write ``audit.validation_results`` and ``audit.quarantine`` in one transaction, and,
    when the gate blocks, the blocked deliveries to ``audit.rejected_deliveries``.

    Rows are written per (load, month) of the report, replacing what an earlier validation
    of the same load and month wrote, so a re-run never doubles them and validating one
    month never touches another. A blocked report records its results but no quarantine
    rows: nothing downstream runs on it. Its blocked (load, month) deliveries
    (:func:`rejected_partitions`) are appended as rejected, once each: from then on
    ``raw.latest_deliveries`` leaves them out, and the month falls back to its previous
    accepted delivery.
    """
    now = datetime.now(UTC).replace(tzinfo=None)
    failures, parts = report.failures, report.partitions
    failing = set(zip(failures["_load_id"], failures["month"], strict=True))
    # A month no rule failed in has the same results as any other, but for its row count:
    # written from a template, a window of hundreds of clean months takes milliseconds, not
    # the seconds that summarising each one costs (``_summarise`` gives the same rows).
    clean = [
        (rule.name, rule.severity, _status(rule.severity, 0), 0, "[]") for rule in report.rules
    ] + [(THRESHOLD_RULE, "blocking", "pass", 0, "[]")]
    records: list[tuple] = []
    for i, part in enumerate(parts.to_dict("records")):
        if (part["_load_id"], part["month"]) not in failing and not report.missing_columns:
            checked = int(part["rows"])
            records.extend(
                (
                    name,
                    severity,
                    status,
                    failing_rows,
                    checked,
                    sample,
                    part["_load_id"],
                    part["month"],
                )
                for name, severity, status, failing_rows, sample in clean
            )
            continue
        mine = failures[
            (failures["_load_id"] == part["_load_id"]) & (failures["month"] == part["month"])
        ]
        table, _ = _summarise(
            mine,
            parts.iloc[[i]],
            report.max_quarantine_fraction,
            report.missing_columns,
            report.rules,
        )
        table = table.assign(_load_id=part["_load_id"], month=part["month"])
        records.extend(table.itertuples(index=False, name=None))
    new_results = pd.DataFrame.from_records(
        records, columns=[*RESULT_COLUMNS, "_load_id", "month"]
    ).astype({"failing_rows": "int64", "checked_rows": "int64"})
    new_results = new_results.assign(validated_at=now)
    quarantine = report.quarantined.iloc[0:0] if report.blocked else report.quarantined
    new_quarantine = quarantine.assign(quarantined_at=now)
    validated = parts[["_load_id", "month"]]
    rejected = rejected_partitions(report).assign(rejected_at=now)

    ensure_latest_deliveries(warehouse_path)
    with connect(warehouse_path) as con:
        con.register("validated", validated)
        con.register("new_results", new_results)
        con.register("new_quarantine", new_quarantine)
        con.register("new_rejected", rejected)
        con.execute("begin transaction")
        try:
            for table in ("audit.validation_results", "audit.quarantine"):
                con.execute(
                    f"""delete from {table} t using validated v
                        where t._load_id = v._load_id and t.month is not distinct from v.month"""
                )
            con.execute(
                """insert into audit.validation_results by name
                   select _load_id, month, rule, severity, status, failing_rows, checked_rows,
                          sample, validated_at
                   from new_results"""
            )
            con.execute(
                """insert into audit.quarantine by name
                   select _load_id, _source, _source_row, month, rule, detail, quarantined_at
                   from new_quarantine"""
            )
            con.execute(
                f"""insert into {REJECTED_DELIVERIES} by name
                    select n._load_id, n.month, n.rule, n.detail, n.rejected_at
                    from new_rejected as n
                    where not exists (
                        select 1 from {REJECTED_DELIVERIES} as r
                        where r._load_id = n._load_id and r.month is not distinct from n.month
                    )"""
            )
            con.execute("commit")
        except Exception:
            con.execute("rollback")
            raise


def withdraw_rejection(warehouse_path: Path, load_id: str, month: str | None = None) -> int:
    """Take back the gate's rejection of load ``load_id`` (of one ``month``, or all its
    months), so the delivery is its month's latest again and the next validation checks it,
    for example with a higher ``max_quarantine_fraction``. Returns the rejections removed."""
    with connect(warehouse_path) as con:
        (count,) = con.execute(
            f"""delete from {REJECTED_DELIVERIES}
                where _load_id = ? and (?::varchar is null or month = ?)""",
            [load_id, month, month],
        ).fetchone()
    return int(count)


def raise_if_blocked(report: ValidationReport, *, show: int = 5) -> None:
    """Raise :class:`ValidationBlocked` naming file, line, column and rule of the first failures.

    The first failure of each blocking rule is shown before further ones, so one rule failing
    on every row does not hide another.
    """
    if not report.blocked:
        return
    failures = report.blocking_failures
    firsts, rules = [], set()
    for failure in failures:
        if failure.rule not in rules:
            rules.add(failure.rule)
            firsts.append(failure)
    shown = (firsts + [f for f in failures if f not in firsts])[:show]
    lines = [str(f) for f in shown]
    if len(failures) > len(shown):
        counts = pd.Series([f.rule for f in failures]).value_counts(sort=False)
        per_rule = ", ".join(f"{rule} {count:,}" for rule, count in counts.items())
        lines.append(f"... and {len(failures) - len(shown):,} more ({per_rule} in all).")
    recorded = (
        f"record_results records the blocked delivery in {REJECTED_DELIVERIES}: it is never "
        "read again (raw keeps its rows), and its month falls back to its previous accepted "
        "delivery, if it has one."
    )
    if all(f.rule == THRESHOLD_RULE for f in failures):
        advice = (
            "Look at report.quarantined (or the samples in audit.validation_results). "
            f"{recorded} Deliver a corrected file, then re-run; or, if the rows are acceptable, "
            "raise max_quarantine_fraction, take the rejection back with "
            "hdb_elt.validation.withdraw_rejection(warehouse_path, load_id, month) and re-run."
        )
    else:
        advice = f"{recorded} Fix the file and deliver it again (or remove it), then re-run."
    raise ValidationBlocked(
        f"Validation blocked: {len(failures):,} blocking failure(s) in "
        f"{report.rows_checked:,} rows; nothing downstream will run.\n"
        + "\n".join(lines)
        + f"\n{advice}",
        report,
    )


def _basename(source: object) -> str:
    """The file name of a delivery path; for an API request URL, its host and path."""
    text = str(source)
    if text.startswith(("http://", "https://")):
        url = urlparse(text)
        return f"{url.netloc}{url.path}"
    return Path(text).name


def _describe_source(source: object) -> str:
    """A delivery's file name, saying whether the file is still there (an API URL: its host
    and path)."""
    if source is None:
        return "unknown"
    text = str(source)
    if text.startswith(("http://", "https://")):
        return _basename(text)
    state = "still in the deliveries folder" if Path(text).exists() else "no longer there"
    return f"{_basename(text)}, {state}"


def _where(source: object, source_row: object) -> str:
    """``file.csv line 14`` for a delivery file, ``host/path record 14`` for an API request."""
    if source is None or source_row is None or pd.isna(source_row):
        return ""
    unit = "record" if str(source).startswith(("http://", "https://")) else "line"
    return f"{_basename(source)} {unit} {int(source_row)}"
