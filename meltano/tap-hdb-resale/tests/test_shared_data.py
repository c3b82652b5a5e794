"""The real 2023 deliveries (read from the shared folder beside the repository, if present)."""

from __future__ import annotations

import csv
from pathlib import Path

from tap_helpers import run_tap


def data_rows_per_month(folder: Path) -> dict[str, int]:
    counts = {}
    for path in sorted(folder.glob("*.csv")):
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.DictReader(handle))
        counts[rows[0]["month"]] = len(rows)
    return counts


def test_twelve_months_every_row_once(shared_monthly: Path) -> None:
    config = {"data_dir": str(shared_monthly), "start_month": "2023-01", "end_month": "2023-12"}
    first = run_tap(config)
    expected = data_rows_per_month(shared_monthly)
    assert len(expected) == 12
    assert len(first.records) == 25_777
    assert first.month_counts() == expected
    assert {month: entry["rows"] for month, entry in first.months.items()} == expected

    # Unchanged files are not extracted again (files mode has no lookback).
    second = run_tap(config, first.state)
    assert second.month_counts() == {}
    assert second.months == first.months
