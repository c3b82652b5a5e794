"""Synthetic deliveries at any scale, for the benchmark: the 2023 deliveries spread over years.

``synthesize`` writes one CSV per month of a window (by default 1990-01 to 2025-12, the span
of HDB's published resale history), named like data.gov.sg's monthly deliveries
(``resale-flat-prices-YYYY-MM.csv``, LF line endings) and written **in the format of the
resource that publishes that month** (``tap_hdb_resale.resources.resource_of``), so a benchmark
over the whole history exercises the real mix of formats:

- 1990-1999: ten columns (no ``remaining_lease``), flat models in capitals (``NEW
  GENERATION``), ``MULTI GENERATION`` spaced;
- 2000-Feb 2012: ten columns, ``MULTI GENERATION`` spaced, prices written like ``147000.0``;
- Mar 2012-2014: ten columns, some storeys in five-storey bands (``01 TO 05``);
- 2015-2016: eleven columns, ``remaining_lease`` a whole number of years (``70``);
- 2017 onwards: today's format (``61 years 04 months``).

One file per month rather than one per resource (as data.gov.sg publishes them, see
``data/history_sample/``): the benchmark, the sensor and Dagster's partitions all work month by
month, a month's file is written, reused and checked on its own, and the tap tells a month's
resource from the month whatever the file's name.

Each month holds rows of the reference month with the same calendar month (January from
2023-01, ...), drawn in a seeded order and changed so that they stay plausible in their new
year:

- ``month`` is the new month;
- the flat keeps its age relative to the span HDB existed then: ages are scaled by
  ``(year - 1960) / (2023 - 1960)``, so a 1990 sale is of a flat leased 1960 to 1990;
- ``remaining_lease`` follows from the new lease start (99-year leases);
- ``resale_price`` follows the rough shape of HDB's resale price index (:data:`PRICE_INDEX`):
  a 2023 price times the year's index over 2023's, so a 1990 flat sells for tens of thousands
  of dollars; then multiplied by a seeded factor in [0.9, 1.1] and rounded to a dollar.

Every value is one the real files hold, so a benchmark run measures the pipeline, not its error
paths. The same seed writes byte-identical files; the generator uses Python's own ``random``,
so no library version can change them.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tap_hdb_resale.resources import RESOURCES, Resource, resource_of

from hdb_elt.months import Month
from hdb_elt.warehouse import SOURCE_COLUMNS

SOURCE_YEAR = 2023
DEFAULT_START = "1990-01"
DEFAULT_END = "2025-12"
DEFAULT_SEED = 0
FILE_PREFIX = "resale-flat-prices-"
MANIFEST = "synthetic.json"  # not *.csv, so the tap never reads it
HDB_FOUNDED = 1960
LEASE_MONTHS = 99 * 12
PRICE_FACTOR = (0.9, 1.1)
# Whole dollars from the cheapest 1990 sale of the real files (a few thousand) to the dearest
# flats of today; the index below keeps almost every price well inside.
PRICE_BOUNDS = (5_000, 3_000_000)
# The rough shape of HDB's resale price index, yearly (2009 Q1 = 100, rounded): the climb to the
# 1997 peak, the slide after the Asian financial crisis, the rise to 2013, the dip to 2019 and
# the climb since. Only the shape matters here, not the published figures.
PRICE_INDEX = {
    1990: 25, 1991: 28, 1992: 33, 1993: 43, 1994: 55, 1995: 66, 1996: 90, 1997: 104,
    1998: 88, 1999: 83, 2000: 85, 2001: 80, 2002: 78, 2003: 77, 2004: 76, 2005: 76,
    2006: 78, 2007: 86, 2008: 98, 2009: 103, 2010: 117, 2011: 131, 2012: 142, 2013: 148,
    2014: 140, 2015: 136, 2016: 135, 2017: 133, 2018: 132, 2019: 130, 2020: 133, 2021: 150,
    2022: 167, 2023: 177, 2024: 190, 2025: 200,
}  # fmt: skip
# The five resources, oldest first: each writes its months in its own way.
NINETIES, TWO_THOUSANDS, MAR_2012_TO_2014, YEARS_2015_2016, CURRENT = RESOURCES
# Mar 2012-2014: the share of rows written in a five-storey band (01 TO 05) instead of three.
FIVE_STOREY_SHARE = 0.3

_COLUMN = {name: i for i, name in enumerate(SOURCE_COLUMNS)}


class SynthesisError(ValueError):
    """The synthesis cannot run as asked; the message says what to change."""


@dataclass
class Synthesis:
    """What :func:`synthesize` wrote."""

    folder: Path
    rows: int
    seed: int
    start: str
    end: str
    files: list[Path] = field(default_factory=list)

    def manifest(self) -> dict:
        return {"rows": self.rows, "seed": self.seed, "start": self.start, "end": self.end}


def read_reference(source_dir: Path) -> dict[int, list[list[str]]]:
    """The reference rows by calendar month (1..12), as text in the eleven columns' order."""
    by_month: dict[int, list[list[str]]] = {}
    files = sorted(Path(source_dir).glob(f"{FILE_PREFIX}*.csv"))
    if not files:
        raise SynthesisError(
            f"No {FILE_PREFIX}YYYY-MM.csv files in {source_dir}: point --source at the "
            "reference deliveries (../shared/data/hdb_resale/monthly)."
        )
    for path in files:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            for record in reader:
                row = [record[column] for column in SOURCE_COLUMNS]
                by_month.setdefault(Month.parse(row[0]).month, []).append(row)
    missing = [m for m in range(1, 13) if m not in by_month]
    if missing:
        raise SynthesisError(
            f"The reference deliveries in {source_dir} have no rows for calendar month(s) "
            f"{', '.join(f'{m:02d}' for m in missing)}: every month of the year is needed."
        )
    return by_month


def month_sizes(rows: int, months: int) -> list[int]:
    """``rows`` spread over ``months`` as evenly as possible, the earlier months one larger."""
    base, extra = divmod(rows, months)
    return [base + (1 if i < extra else 0) for i in range(months)]


def remaining_lease_text(months: int) -> str:
    """Remaining lease in the reference data's words: ``61 years 04 months``, ``61 years``."""
    years, rest = divmod(months, 12)
    if rest == 0:
        return f"{years} years"
    return f"{years} years {rest:02d} {'month' if rest == 1 else 'months'}"


def parse_remaining_lease(text: str) -> int | None:
    """Months of a ``remaining_lease`` text, or None when empty."""
    parts = text.split()
    if not parts:
        return None
    months = int(parts[0]) * 12
    if len(parts) >= 3:
        months += int(parts[2])
    return months


def shift_row(row: Sequence[str], month: Month, rng: random.Random) -> list[str]:
    """One reference row moved to ``month``, in today's eleven columns: lease, remaining lease
    and price adjusted (:func:`as_delivered` then writes it as the month's resource does)."""
    out = list(row)
    out[_COLUMN["month"]] = str(month)
    source_lease = int(row[_COLUMN["lease_commence_date"]])
    source_age = SOURCE_YEAR - source_lease
    age = round(source_age * (month.year - HDB_FOUNDED) / (SOURCE_YEAR - HDB_FOUNDED))
    age = max(0, min(age, month.year - HDB_FOUNDED))
    out[_COLUMN["lease_commence_date"]] = str(month.year - age)
    remaining = parse_remaining_lease(row[_COLUMN["remaining_lease"]])
    if remaining is not None:
        remaining = max(0, min(remaining + (source_age - age) * 12, LEASE_MONTHS))
        out[_COLUMN["remaining_lease"]] = remaining_lease_text(remaining)
    price = (
        float(row[_COLUMN["resale_price"]]) * price_scale(month.year) * rng.uniform(*PRICE_FACTOR)
    )
    out[_COLUMN["resale_price"]] = str(
        int(min(max(round(price), PRICE_BOUNDS[0]), PRICE_BOUNDS[1]))
    )
    return out


def price_scale(year: int) -> float:
    """How a 2023 price compares with one of ``year``: the index's ratio (years after the
    index's last take its last value)."""
    return PRICE_INDEX[min(year, max(PRICE_INDEX))] / PRICE_INDEX[SOURCE_YEAR]


def five_storey_band(storey_range: str) -> str:
    """The five-storey band holding a band's lowest storey: ``04 TO 06`` -> ``01 TO 05``."""
    lowest = int(storey_range.split()[0])
    first = (lowest - 1) // 5 * 5 + 1
    return f"{first:02d} TO {first + 4:02d}"


def as_delivered(row: Sequence[str], resource: Resource, rng: random.Random) -> list[str]:
    """A row in today's eleven columns written as ``resource`` writes its rows, in its columns."""
    values = dict(zip(SOURCE_COLUMNS, row, strict=True))
    if resource in (NINETIES, TWO_THOUSANDS) and values["flat_type"] == "MULTI-GENERATION":
        values["flat_type"] = "MULTI GENERATION"
    if resource is NINETIES:
        values["flat_model"] = values["flat_model"].upper()
    elif resource is TWO_THOUSANDS:
        values["resale_price"] += ".0"
    elif resource is MAR_2012_TO_2014 and rng.random() < FIVE_STOREY_SHARE:
        values["storey_range"] = five_storey_band(values["storey_range"])
    elif resource is YEARS_2015_2016:
        months = parse_remaining_lease(values["remaining_lease"])
        values["remaining_lease"] = "" if months is None else str(months // 12)
    return [values[column] for column in resource.columns]


def month_rows(
    source: Sequence[Sequence[str]], month: Month, size: int, seed: int
) -> list[list[str]]:
    """``size`` rows for ``month`` in its resource's columns and spellings: the reference rows
    in a seeded order, cycled if needed.

    Each month has its own generator (seeded by the seed and the month), so a month's rows do
    not depend on which other months are written.
    """
    rng = random.Random(f"hdb-synthetic:{seed}:{month}")
    resource = resource_of(str(month))
    order: list[int] = []
    while len(order) < size:
        order.extend(rng.sample(range(len(source)), len(source)))
    return [as_delivered(shift_row(source[i], month, rng), resource, rng) for i in order[:size]]


def synthesize(
    source_dir: Path,
    out_dir: Path,
    rows: int,
    *,
    start: str = DEFAULT_START,
    end: str = DEFAULT_END,
    seed: int = DEFAULT_SEED,
    reuse: bool = False,
) -> Synthesis:
    """Write ``rows`` synthetic rows, one delivery per month of ``start``..``end``, to ``out_dir``.

    Deliveries of earlier syntheses in ``out_dir`` are removed first, so the folder holds
    exactly this synthesis (a tap reading it sees no stray month). ``reuse``: a folder that
    already holds this synthesis (its manifest and every month) is kept as it is.
    """
    first, last = Month.parse(start), Month.parse(end)
    if last < first:
        raise SynthesisError(f"end {end} is before start {start}.")
    months = first.range_to(last)
    result = Synthesis(Path(out_dir), rows, seed, str(first), str(last))
    manifest = Path(out_dir) / MANIFEST
    if reuse and manifest.is_file() and json.loads(manifest.read_text()) == result.manifest():
        result.files = sorted(Path(out_dir).glob(f"{FILE_PREFIX}*.csv"))
        if len(result.files) == len(months):
            return result
        result.files = []
    if rows < len(months):
        raise SynthesisError(
            f"{rows:,} rows cannot fill {len(months)} months ({start}..{end}): ask for at "
            f"least one row per month, or a shorter window."
        )
    reference = read_reference(source_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(f"{FILE_PREFIX}*.csv"):
        stale.unlink()
    for month, size in zip(months, month_sizes(rows, len(months)), strict=True):
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(resource_of(str(month)).columns)
        writer.writerows(month_rows(reference[month.month], month, size, seed))
        path = out_dir / f"{FILE_PREFIX}{month}.csv"
        path.write_text(buffer.getvalue(), encoding="utf-8", newline="")
        result.files.append(path)
    (out_dir / MANIFEST).write_text(json.dumps(result.manifest(), indent=2) + "\n")
    return result
