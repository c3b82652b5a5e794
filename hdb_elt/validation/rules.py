"""The validate stage's data-quality rules: what the gate checks, and the file to edit to
add a rule.

Every rule is a :class:`Rule`: a name, a severity, a sentence saying what it checks, the raw
columns a failure is reported against, a pandera schema that does the checking, and a phrase
saying what is wrong with one failing value. :data:`RULES` lists them in the order they are
checked; :mod:`hdb_elt.validation.engine` maps pandera's failure cases back to raw rows
(``_source``, ``_source_row``). Rules come in four severities:

- ``blocking``: the delivery is broken (a column missing, a value of the wrong type, a month
  that is not a month or outside the window). The gate
  (:func:`hdb_elt.validation.raise_if_blocked`) stops the run so nothing downstream reads it.
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

To add a rule, append a :class:`Rule` to :data:`RULES` below (copy the one closest to yours)
and a test to ``tests/test_validation.py``. A rule written in a notebook joins the gate
without editing this file: ``validate_load(rows, start, end, extra_rules=[rule])`` (exercise
01 does that).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
import pandera.pandas as pa

from hdb_elt.months import Month
from hdb_elt.validation.locations import row_location
from hdb_elt.warehouse import SOURCE_COLUMNS

# --- what the rules know ------------------------------------------------------------------

# The columns every delivery has: the source's (hdb_elt.warehouse) and where each row came from.
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

# The one rule over whole months rather than rows, checked after RULES: a month blocks when
# more than this share of its rows are quarantined (a validate_load argument).
THRESHOLD_RULE = "quarantine_threshold"
DEFAULT_MAX_QUARANTINE_FRACTION = 0.01


# --- what a rule is -----------------------------------------------------------------------


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


# --- how the rules check and what they say of a failing value -----------------------------


def _column_schema(column: str, *checks: pa.Check) -> Callable[[Window], pa.DataFrameSchema]:
    """A rule's schema checking one column, the same in every window."""
    return lambda _window: pa.DataFrameSchema(
        {column: pa.Column(nullable=True, checks=list(checks))}
    )


def _storey_ascending(values: pd.Series) -> pd.Series:
    """``NN TO NN`` with the lower storey first (a value not of that form is another check's)."""
    bounds = values.str.extract(r"^(\d{2}) TO (\d{2})$").astype("float")
    return bounds[0].isna() | (bounds[0] <= bounds[1])


def _lease_in_range(frame: pd.DataFrame) -> pd.Series:
    """The lease starts no earlier than HDB and no later than the sale's year + the margin."""
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
        else row_location(row["first_source"], row["first_row"])
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


# --- the rules, in the order they are checked ---------------------------------------------

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


# --- the rules with a notebook's extra ones -----------------------------------------------


def all_rules(extra_rules: Sequence[Rule]) -> tuple[Rule, ...]:
    """:data:`RULES` and then ``extra_rules``, refusing a rule that is not a Rule or a name
    that is taken (results and audit rows are keyed by rule name)."""
    names = {rule.name for rule in RULES}
    for rule in extra_rules:
        if not isinstance(rule, Rule):
            raise TypeError(
                f"extra_rules holds a {type(rule).__name__}: expected hdb_elt.validation.Rule "
                "objects (see RULES in hdb_elt/validation/rules.py for examples)."
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
    rows = [(r.name, r.severity, r.description) for r in all_rules(extra_rules)]
    rows.append(
        (
            THRESHOLD_RULE,
            "blocking",
            f"at most {max_quarantine_fraction:.1%} of each month's rows are quarantined",
        )
    )
    return pd.DataFrame(rows, columns=["rule", "severity", "description"])
