"""The headless pipeline behind ``make run``: the five stage notebooks, in order, via papermill.

Each notebook runs with the window injected into its ``parameters`` cell; the executed copies
are kept in ``data/runs/<time>/`` as the record of the run. The first failing stage stops the
run, and its own error (a named file, line and rule; a named dbt test) is what gets printed.
"""

from __future__ import annotations

import time

from hdb_elt.extract_load import latest_delivery_counts
from hdb_elt.notebooks import StageFailed, iter_stages, new_run_dir
from hdb_elt.settings import Settings, display_path
from hdb_elt.warehouse import connect


def mart_counts(settings: Settings) -> tuple[int, int]:
    """Sales and distinct transaction ids in the fact table for the window."""
    with connect(settings.warehouse_path, read_only=True) as con:
        return con.execute(
            "select count(*), count(distinct transaction_id) from marts.fct_resale_transactions "
            "where month_key between ? and ?",
            [str(settings.start_month), str(settings.end_month)],
        ).fetchone()


def run_pipeline(settings: Settings) -> int:
    """Run every stage for the window and print a summary; returns an exit code."""
    started = time.perf_counter()
    run_dir = new_run_dir()
    print(f"Pipeline: {settings.describe()}")
    print(f"Executed notebooks go to {display_path(run_dir)}/")
    try:
        for stage in iter_stages(settings, run_dir):
            print(f"  {stage.stage:<16} done in {stage.seconds:5.1f} s")
    except StageFailed as failure:
        print(f"  {failure.stage:<16} FAILED")
        print(f"\n{failure}")
        return 1
    counts = {
        month: rows
        for month, rows in latest_delivery_counts(settings.warehouse_path).items()
        if str(settings.start_month) <= month <= str(settings.end_month)
    }
    sales, ids = mart_counts(settings)
    print(
        f"\nLatest deliveries in the window: {sum(counts.values()):,} rows in "
        f"{len(counts)} month(s); marts.fct_resale_transactions: {sales:,} sales "
        f"({ids:,} distinct ids)."
    )
    print(f"Report charts and summary: {display_path(settings.warehouse_path.parent / 'report')}/")
    print(f"Done in {time.perf_counter() - started:.1f} s.")
    return 0
