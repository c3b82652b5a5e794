"""The headless pipeline behind ``make run``: the five stage notebooks, through Dagster.

The window runs as Dagster's job over its monthly partitions, in this process, recorded in
the project's Dagster instance (``.dagster_home/``), so ``make dev`` shows the run, its checks
and its executed notebooks afterwards (see ``dagster_orchestration/run.py``). The first failing
stage stops the run, and its own error (a named file, line and rule; a named dbt test) is what
gets printed, with the executed notebook where it stopped.

``hdb_elt.notebooks.run_stages`` still runs the notebooks with papermill alone, without Dagster.
"""

from __future__ import annotations

import time

from hdb_elt.extract_load import latest_delivery_counts
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


def _say(line: str) -> None:
    print(line, flush=True)  # as it happens, also when the output is a pipe (CI, a log)


def run_pipeline(settings: Settings, *, per_month: bool = False) -> int:
    """Run every stage for the window through Dagster and print a summary; returns an exit
    code. ``per_month`` starts one run per month (as a backfill does) instead of one run."""
    from dagster_orchestration.home import prepare_home
    from dagster_orchestration.run import describe, run_windows

    started = time.perf_counter()
    print(f"Pipeline: {settings.describe()}")
    print(f"Dagster instance: {display_path(prepare_home())}/ (see the runs with make dev)\n")
    failed = 0
    for outcome in run_windows(settings, per_month=per_month, progress=_say):
        print()
        describe(outcome)
        failed += not outcome.success
    if failed:
        print(f"\n{failed} run(s) failed.")
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
