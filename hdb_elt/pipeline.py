"""The headless pipeline behind ``make run``: every stage for the configured window, in order."""

from __future__ import annotations

import time

from hdb_elt.extract_load import latest_delivery_counts, run_extract_load
from hdb_elt.settings import Settings
from hdb_elt.transform import transform_window
from hdb_elt.warehouse import connect


def run_pipeline(settings: Settings) -> int:
    """Extract-load, then dbt build, for the window; print a summary; returns an exit code."""
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
    summary = transform_window(settings)
    parts = []
    for kind, by_status in sorted(summary.items()):
        total = sum(by_status.values())
        statuses = ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
        parts.append(f"{total} {kind}{'' if total == 1 else 's'} ({statuses})")
    print("Transform: dbt build " + "; ".join(parts) + ".")
    with connect(settings.warehouse_path, read_only=True) as con:
        facts = con.execute(
            "select count(*), count(distinct transaction_id) from marts.fct_resale_transactions "
            "where month_key between ? and ?",
            [str(settings.start_month), str(settings.end_month)],
        ).fetchone()
    print(
        f"Marts: fct_resale_transactions holds {facts[0]:,} sales in the window "
        f"({facts[1]:,} distinct transaction ids)."
    )
    print(f"Done in {time.perf_counter() - started:.1f} s.")
    return 0
