"""Open the shared warehouse: a DuckLake whose catalog is a PostgreSQL database and whose data
files are Parquet in a shared folder.

The one definition of how the warehouse's DuckLake is attached: this loader uses it, and so
does the workbook (hdb_elt.warehouse), which imports it. The ``ducklake`` and ``postgres``
extensions come from PyPI (``duckdb-ext-ducklake``, ``duckdb-ext-postgres``, pinned beside
DuckDB), installed into site-packages; DuckDB is pointed at them and never downloads one.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

# Where the duckdb-ext-* wheels put the extensions: <site-packages>/duckdb_ext/extensions/
# v<duckdb version>/<platform>/<name>.duckdb_extension.
EXTENSION_DIRECTORY = Path(duckdb.__file__).resolve().parent.parent / "duckdb_ext" / "extensions"
# The name the lake is attached as, and made the default (USE), so every query reads the same
# names as in a DuckDB file: raw.resale_flat_prices, marts.fct_resale_transactions...
LAKE_ALIAS = "warehouse"
# A commit that races another run's commit (two months loaded at once, each a new snapshot)
# is retried by DuckLake itself; its default is 10 tries from 100 ms, growing by 1.5.
MAX_RETRY_COUNT = 20


def sql_text(value: str) -> str:
    """``value`` as a SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def attach_path(catalog: str) -> str:
    """What ATTACH is given for a DuckLake whose catalog is the PostgreSQL database that the
    libpq connection string ``catalog`` names."""
    return f"ducklake:postgres:{catalog}"


def offline_connection() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that loads extensions only from :data:`EXTENSION_DIRECTORY` (the
    PyPI ``duckdb-ext-*`` packages) and never installs or fetches one."""
    return duckdb.connect(
        config={
            "extension_directory": str(EXTENSION_DIRECTORY),
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
    )


def connect_lake(
    catalog: str, data_path: str | Path, *, read_only: bool = False
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the lake attached as :data:`LAKE_ALIAS` and in use.

    ``read_only`` attaches the lake read-only: a reader cannot change it by mistake. A new lake
    (an empty catalog database) is initialised by the first writer that attaches it.
    """
    con = offline_connection()
    try:
        con.execute("load ducklake")
        con.execute("load postgres")
        options = [f"data_path {sql_text(str(data_path).rstrip('/') + '/')}"]
        if read_only:
            options.append("read_only")
        con.execute(
            f"attach {sql_text(attach_path(catalog))} as {LAKE_ALIAS} ({', '.join(options)})"
        )
        con.execute(f"use {LAKE_ALIAS}")
        con.execute(f"set ducklake_max_retry_count = {MAX_RETRY_COUNT}")
    except BaseException:
        con.close()
        raise
    return con
