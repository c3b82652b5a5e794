"""One dbt at a time on the shared warehouse: a PostgreSQL advisory lock in its catalog.

In the shared DuckLake, runs of different months load and validate at once: those tables are
partitioned by month, so their transactions touch different files and commit side by side. A
dbt build rewrites what every month shares (the seeds, the dimensions, the monthly aggregate),
one model a transaction, and the test stage reads across months; two builds interleaved would
fail at commit or, worse, let a test see one build's fact beside another's aggregate. So each
``dbt`` on the lake holds this lock: builds and tests of concurrent runs take turns, and each
sees the marts as one whole build left them.

The lock lives in the catalog's PostgreSQL server, so it holds across processes and machines
(a Dagster run queue on one host, or runs in pods of a cluster), and PostgreSQL releases it
when the holder's connection ends, a killed run included.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from target_hdb_duckdb.lake import offline_connection, sql_text

from hdb_elt.settings import Lake

# pg_advisory_lock's key (any bigint the class's server uses for nothing else): "hdbdbt".
DBT_LOCK_KEY = 0x686462646274
# How long a dbt waits for the one before it (a 12-month build takes about a minute).
LOCK_TIMEOUT_SECONDS = 1800


@contextmanager
def dbt_lock(lake: Lake, timeout_seconds: int = LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
    """Hold the shared warehouse's dbt lock for the block (waiting for it if needed)."""
    con = offline_connection()
    try:
        con.execute("load postgres")
        con.execute(f"attach {sql_text(lake.catalog)} as catalog (type postgres)")
        # One call, so the timeout and the lock share a connection; the lock is the session's
        # until this connection closes (below, or with the process).
        statement = (
            f"set lock_timeout = '{int(timeout_seconds)}s'; select pg_advisory_lock({DBT_LOCK_KEY})"
        )
        con.execute(f"call postgres_execute('catalog', {sql_text(statement)})")
        yield
    finally:
        con.close()
