"""Synthetic deliveries at any scale, for the benchmark: the 2023 deliveries spread over years.

``synthesize`` writes one CSV per month of a window (by default 1990-01 to 2025-12, the span
of HDB's published resale history), named and shaped exactly like data.gov.sg's monthly
deliveries (``resale-flat-prices-YYYY-MM.csv``, the eleven columns in their order, LF line
endings). Each month holds rows of the reference month with the same calendar month
(January from 2023-01, ...), drawn in a seeded order and changed so that they stay plausible
in their new year:

- ``month`` is the new month;
- the flat keeps its age relative to the span HDB existed then: ages are scaled by
  ``(year - 1960) / (2023 - 1960)``, so a 1990 sale is of a flat leased 1960 to 1990;
- ``remaining_lease`` follows from the new lease start (99-year leases), in the reference
  data's wording (``NN years MM months``, ``01 month``, ``NN years``);
- ``resale_price`` is multiplied by a seeded factor in [0.9, 1.1] and rounded to a dollar.

Every value stays inside the rules of the tap, the validation gate and dbt's tests, so a
benchmark run measures the pipeline, not its error paths. The same seed writes
byte-identical files; the generator uses Python's own ``random``, so no library version can
change them.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tap_hdb_resale.resources import resource_of

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
PRICE_BOUNDS = (50_000, 3_000_000)  # dbt's accepted range for resale_price

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
    """One reference row moved to ``month``: lease, remaining lease and price adjusted."""
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
    price = float(row[_COLUMN["resale_price"]]) * rng.uniform(*PRICE_FACTOR)
    out[_COLUMN["resale_price"]] = str(
        int(min(max(round(price), PRICE_BOUNDS[0]), PRICE_BOUNDS[1]))
    )
    return out


def month_rows(
    source: Sequence[Sequence[str]], month: Month, size: int, seed: int
) -> list[list[str]]:
    """``size`` rows for ``month``: the reference rows in a seeded order, cycled if needed.

    Each month has its own generator (seeded by the seed and the month), so a month's rows do
    not depend on which other months are written.
    """
    rng = random.Random(f"hdb-synthetic:{seed}:{month}")
    order: list[int] = []
    while len(order) < size:
        order.extend(rng.sample(range(len(source)), len(source)))
    return [shift_row(source[i], month, rng) for i in order[:size]]


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
        # In the columns of the month's resource, as the tap requires: no remaining_lease
        # before 2015.
        columns = resource_of(str(month)).columns
        keep = [_COLUMN[column] for column in columns]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(
            [row[i] for i in keep] for row in month_rows(reference[month.month], month, size, seed)
        )
        path = out_dir / f"{FILE_PREFIX}{month}.csv"
        path.write_text(buffer.getvalue(), encoding="utf-8", newline="")
        result.files.append(path)
    (out_dir / MANIFEST).write_text(json.dumps(result.manifest(), indent=2) + "\n")
    return result
