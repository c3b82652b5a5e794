"""The five data.gov.sg resources of resale prices since 1990, as a learner reads them.

The resources themselves (dataset ids, periods, approval or registration month, columns) are
described once, in the tap: ``tap_hdb_resale.resources``. This module turns that description
into a table for notebook 01, adds what a reader should look for in each format (its quirks),
and reads the first rows of each format from the sample files in ``data/history_sample/``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
from tap_hdb_resale.resources import COLUMNS, RESOURCES, Resource

from hdb_elt.settings import DATA_DIR

SAMPLE_DIR = DATA_DIR / "history_sample"
ABSENT = "(no column)"

# What changed in each resource's format, for people; the keys are the dataset ids of
# tap_hdb_resale.resources.RESOURCES (tests/test_history.py keeps them equal).
QUIRKS = {
    "d_ebc5ab87086db484f88045b47411ebc5": (
        "flat models in capitals (NEW GENERATION, 2-ROOM); MULTI GENERATION spaced; "
        "prices from a few thousand dollars"
    ),
    "d_43f493c6c50d54243cc1eab0df142d6a": (
        "title-case models (New Generation, 3Gen); prices written like 147000.0"
    ),
    "d_2d5ff9ea31397b66239f245f57751537": (
        "five-storey bands (01 TO 05) beside three-storey ones (01 TO 03)"
    ),
    "d_ea9ed51da2787afaf8e51f827c304208": "remaining_lease a whole number of years (70)",
    "d_8b84c4ee58e3cfc0ece0d773c8ca6abc": (
        "today's format: remaining_lease like 61 years 04 months"
    ),
}


def period(resource: Resource) -> str:
    """``1990-01..1999-12``, or ``2017-01..`` for the resource still published."""
    return f"{resource.first_month}..{resource.last_month or ''}"


def resources_table() -> pd.DataFrame:
    """One row per resource, oldest first: its period, dataset id, what a row's month is the
    month of, its columns (what is missing against today's eleven) and its quirks."""
    rows = []
    for resource in RESOURCES:
        missing = [c for c in COLUMNS if c not in resource.columns]
        columns = f"{len(resource.columns)}" + (f", no {', '.join(missing)}" if missing else "")
        rows.append(
            {
                "period": period(resource),
                "dataset_id": resource.dataset_id,
                "month is the month of": resource.date_basis,
                "columns": columns,
                "quirks": QUIRKS[resource.dataset_id],
            }
        )
    return pd.DataFrame(rows)


def sample_rows(folder: Path = SAMPLE_DIR, rows: int = 2) -> pd.DataFrame:
    """The first ``rows`` rows of each resource's file in ``folder``, in today's eleven columns,
    as delivered (text); a column the resource does not have reads ``(no column)``."""
    records = []
    for resource in RESOURCES:
        path = Path(folder) / resource.file_name
        if not path.is_file():
            raise FileNotFoundError(
                f"No {resource.file_name} in {folder}: the sample files are in "
                f"data/history_sample/ (python data/history_sample/generate.py writes them)."
            )
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for _, record in zip(range(rows), csv.DictReader(handle), strict=False):
                row = {"period": period(resource)}
                row.update({column: record.get(column, ABSENT) for column in COLUMNS})
                records.append(row)
    return pd.DataFrame(records).set_index("period")
