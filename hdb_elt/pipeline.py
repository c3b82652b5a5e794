"""The headless pipeline behind ``make run``: every stage for the configured window, in order."""

from __future__ import annotations

import time

from hdb_elt.extract_load import latest_delivery_counts, run_extract_load
from hdb_elt.settings import Settings


def run_pipeline(settings: Settings) -> int:
    """Run the stages that exist so far and print a summary; returns an exit code."""
    started = time.perf_counter()
    print(f"Pipeline: {settings.describe()}")
    result = run_extract_load(settings)
    print(result.summary())
    counts = {
        month: rows
        for month, rows in latest_delivery_counts(settings.warehouse_path).items()
        if str(settings.start_month) <= month <= str(settings.end_month)
    }
    print(
        f"Latest deliveries in the window: {sum(counts.values()):,} rows in {len(counts)} month(s)."
    )
    print(f"Done in {time.perf_counter() - started:.1f} s.")
    return 0
