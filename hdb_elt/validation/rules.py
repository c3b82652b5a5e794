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

The plausible ranges hold for every sale since January 1990, when the oldest of the five
data.gov.sg resources starts, with wide margins, so that only values no HDB resale can have are
quarantined (the 2023 reference data, 25,777 rows, passes every rule):

- floor area 20 to 400 sqm: 2023 spans 31 (1-room) to 192 sqm; the largest HDB flats
  (executive maisonettes) are under 300 sqm.
- resale price from a floor that depends on the year of the sale, to 5,000,000 SGD: prices
  rose some fortyfold since 1990 (the 1990 file's first row is a 1-room flat sold for 9,000;
  2023 spans 150,000 to 1,500,000), so one floor for every year would either quarantine the
  1990s or let a 2023 price with its thousands dropped through. Each floor is about a tenth of
  its era's cheapest sales: 1,000 before 2000, 10,000 in the 2000s, 50,000 from 2010.
- lease commencement 1960 (HDB's founding) to the sale year + 1: a flat cannot be resold
  before its lease starts, the margin forgives an off-by-one.
- remaining lease as the month's resource writes it (:mod:`tap_hdb_resale.resources`): absent
  before 2015 (staging derives it), a whole number of years in 2015-2016 (``70``), ``NN years
  MM months`` (or ``NN years``, ``NN years 01 month``) from 2017.

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
from tap_hdb_resale.resources import CURRENT, Resource, resource_of

from hdb_elt.months import Month
from hdb_elt.seeds import known_towns
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
# Every town of the resale data since 1990: the 26 of today, LIM CHU KANG (1990s only) and
# TENGAH (resales from its first flats to come). The one list is dbt's seed
# seeds/town_regions.csv, which gives dim_town each town's region; a town missing there warns
# here and in dbt's relationships test alike.
KNOWN_TOWNS = known_towns()
FLOOR_AREA_SQM_RANGE = (20, 400)
# (first year, lowest plausible price) for sales from that year on; the ceiling for all years.
RESALE_PRICE_FLOORS = ((1990, 1_000), (2000, 10_000), (2010, 50_000))
RESALE_PRICE_CEILING = 5_000_000
EARLIEST_LEASE_YEAR = 1960
LEASE_YEAR_MARGIN = 1

MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
NUMBER_PATTERN = r"^-?\d+(\.\d+)?$"
YEAR_PATTERN = r"^\d{4}$"
# Three storeys a band ("07 TO 09"), and five in 2012-2014 files beside them ("01 TO 05").
STOREY_RANGE_PATTERN = r"^\d{2} TO \d{2}$"
# The remaining lease as each resource writes it, checked on normalised values
# (hdb_elt.normalisation: lower case, single spaces): (pattern, what it looks like).
REMAINING_LEASE_ABSENT = (r"^$", "empty: the resource has no remaining lease")
REMAINING_LEASE_WHOLE_YEARS = (r"^\d{1,2}$", "a whole number of years such as '70'")
REMAINING_LEASE_YEARS_MONTHS = (
    r"^\d{1,2} years?( (0[1-9]|1[01]) months?)?$",
    "'NN years MM months' or 'NN years'",
)
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


def resale_price_floor(years: pd.Series) -> pd.Series:
    """The lowest plausible price of a sale in each of ``years`` (RESALE_PRICE_FLOORS)."""
    floor = pd.Series(float(RESALE_PRICE_FLOORS[0][1]), index=years.index)
    for first_year, lowest in RESALE_PRICE_FLOORS[1:]:
        floor = floor.mask(years >= first_year, float(lowest))
    return floor


def _price_in_range(frame: pd.DataFrame) -> pd.Series:
    """The price is at least its year's floor and at most the ceiling."""
    price = frame["resale_price"]
    floor = resale_price_floor(frame["registration_year"])
    return price.isna() | ((price >= floor) & (price <= RESALE_PRICE_CEILING))


def remaining_lease_form(resource: Resource) -> tuple[str, str]:
    """How ``resource`` writes the remaining lease: (pattern, what it looks like). The current
    resource writes years and months; the older one with the column (2015-2016) whole years."""
    if not resource.has_remaining_lease:
        return REMAINING_LEASE_ABSENT
    return REMAINING_LEASE_YEARS_MONTHS if resource == CURRENT else REMAINING_LEASE_WHOLE_YEARS


def _month_resource(month: str) -> Resource | None:
    try:
        return resource_of(month)
    except ValueError:  # not a month, or before 1990: the month rules say so
        return None


def _remaining_lease_as_the_resource_writes_it(frame: pd.DataFrame) -> pd.Series:
    """Each row's remaining lease matches its month's resource's form."""
    ok = pd.Series(True, index=frame.index)
    for month, rows in frame.groupby("month", sort=False).groups.items():
        resource = _month_resource(str(month))
        if resource is not None:
            pattern, _ = remaining_lease_form(resource)
            ok[rows] = frame.loc[rows, "remaining_lease"].str.match(pattern)
    return ok


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


def _price_phrase(column: str, value: str, row: Mapping, window: Window) -> str:
    year = pd.Series([float(row["registration_year"])])
    if float(value) > RESALE_PRICE_CEILING:
        return f"{value!r} is above {RESALE_PRICE_CEILING:,}"
    return f"{value!r} is below {int(resale_price_floor(year).iloc[0]):,}"


def _remaining_lease_phrase(column: str, value: str, row: Mapping, window: Window) -> str:
    resource = resource_of(row["month"])
    _, looks_like = remaining_lease_form(resource)
    return f"{value!r} is not {looks_like} (month {row['month']}, resource {resource.dataset_id})"


def _lease_phrase(column: str, value: str, row: Mapping, window: Window) -> str:
    if int(value) < EARLIEST_LEASE_YEAR:
        return f"{value!r} is before {EARLIEST_LEASE_YEAR}, when HDB was founded"
    year = int(row["registration_year"])
    return f"{value!r} is after {year + LEASE_YEAR_MARGIN} (sale year {year} + {LEASE_YEAR_MARGIN})"


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
# Every rule is written in the same shape on purpose: to add one, copy the nearest and change it.

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
        "resale_price is at least "
        + ", ".join(f"{low:,} for sales from {year}" for year, low in RESALE_PRICE_FLOORS)
        + f" (prices rose about fortyfold since 1990), at most {RESALE_PRICE_CEILING:,} SGD",
        ("resale_price",),
        lambda _window: pa.DataFrameSchema(
            checks=[pa.Check(_price_in_range, name="resale_price_plausible", ignore_na=False)]
        ),
        _price_phrase,
        frame="typed",
    ),
    Rule(
        "lease_year_plausible",
        "quarantine",
        f"lease_commence_date is {EARLIEST_LEASE_YEAR} to the sale year + {LEASE_YEAR_MARGIN}",
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
        "remaining_lease is as the month's resource writes it: empty before 2015, whole years "
        "(70) in 2015-2016, 'NN years MM months' from 2017",
        ("remaining_lease",),
        lambda _window: pa.DataFrameSchema(
            checks=[
                pa.Check(
                    _remaining_lease_as_the_resource_writes_it,
                    name="remaining_lease_format",
                    ignore_na=False,
                )
            ]
        ),
        _remaining_lease_phrase,
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
            f"{value!r} is not a known HDB town "
            "(a new town? add it with its region to dbt_resale_flat/seeds/town_regions.csv)"
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
