"""The warehouse: connections, its identity, and the tables the pipeline owns.

The warehouse is a DuckDB file (the default) or, in the shared class mode, a DuckLake whose
catalog is in PostgreSQL (``HDB_WAREHOUSE_CATALOG``, ``HDB_WAREHOUSE_DATA_PATH``). Every reader
and writer opens it with :func:`connect`, which reads the same names in either mode
(``raw.resale_flat_prices``, ``audit.quarantine``, ``marts.fct_resale_transactions``...).

DuckDB lets one process write a file at a time. Readers here open the file read-only and
close it at once, so a notebook left open never blocks a run; a writer that finds the file
locked gets :class:`WarehouseLockedError`, which says which file, which process, and what to do.
A DuckLake takes many writers at once: each transaction commits a snapshot, and tables written
month by month are partitioned by month, so runs of different months never touch one file.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd
from tap_hdb_resale.deliveries import COLUMNS, Row, fingerprint
from tap_hdb_resale.resources import FIRST_MONTH, RESOURCES
from target_hdb_duckdb.lake import LAKE_ALIAS, connect_lake  # noqa: F401 (LAKE_ALIAS: for readers)
from target_hdb_duckdb.loader import load_tables_ddl

from hdb_elt.settings import Lake, display_path, lake_settings, not_a_warehouse

# The eleven columns of a delivery, in delivery order: the tap's list, read here (the plugins
# cannot import the workbook, so the workbook imports them). dbt's copy, the raw columns of
# models/staging/_hdb__sources.yml, is kept equal by tests/test_one_place_per_fact.py.
SOURCE_COLUMNS = COLUMNS
RAW_TABLE = "raw.resale_flat_prices"
# The one definition of "the latest accepted delivery of each month": downstream (the gate,
# staging, the reconciliation, Dagster's metadata, the exercises) reads this view, never raw.
LATEST_DELIVERIES = "raw.latest_deliveries"
REJECTED_DELIVERIES = "audit.rejected_deliveries"
EXTRACT_LOADS = "audit.extract_loads"


def dataset_id_sql(month: str = "month") -> str:
    """SQL giving the data.gov.sg dataset id of the resource that publishes ``month`` (a
    ``YYYY-MM`` text column), from tap_hdb_resale.resources; null for a month none publishes."""
    cases = " ".join(
        f"when {month} >= '{r.first_month}'"
        + (f" and {month} <= '{r.last_month}'" if r.last_month else "")
        + f" then '{r.dataset_id}'"
        for r in RESOURCES
    )
    return f"case when not regexp_full_match({month}, '\\d{{4}}-\\d{{2}}') then null {cases} end"


def _ddl(*, lake: bool = False) -> list[str]:
    """The statements creating (or bringing up to date) the warehouse's tables and views."""
    if not lake:
        return list(_DDL)
    lake_tables = dict(zip(load_tables_ddl("raw"), load_tables_ddl("raw", lake=True), strict=True))
    statements = [lake_tables.get(statement, statement) for statement in _DDL]
    # Tables written month by month: runs of different months write different files, so
    # DuckLake commits them side by side (it refuses two transactions deleting from one file).
    statements += [f"alter table {table} set partitioned by (month)" for table in BY_MONTH]
    return statements


# Tables a run writes one month at a time: partitioned by month in a DuckLake.
BY_MONTH = (RAW_TABLE, "audit.validation_results", "audit.quarantine")

_DDL = [
    "create schema if not exists raw",
    "create schema if not exists audit",
    f"""create table if not exists {RAW_TABLE} (
        {", ".join(f"{name} varchar" for name in SOURCE_COLUMNS)},
        _source varchar,
        _source_row bigint,
        _load_id varchar,
        _loaded_at timestamp,
        _dataset_id varchar
    )""",
    # The resource (data.gov.sg dataset id) each row came from. A warehouse made before the
    # column existed gets it here, its rows filled from their month: they are the rows of
    # months the tap then read, and a month's resource is fixed (tap_hdb_resale.resources).
    # The loader writes the column for every row since, so the update finds nothing after.
    f"alter table {RAW_TABLE} add column if not exists _dataset_id varchar",
    f"update {RAW_TABLE} set _dataset_id = {dataset_id_sql()} "
    f"where _dataset_id is null and month >= '{FIRST_MONTH}'",
    # raw._loads (one row a load) and raw._load_months (each month a load delivered, with the
    # tap's fingerprint of its rows: the warehouse's own record of what is loaded), exactly as
    # the loader, meltano/target-hdb-duckdb, creates them.
    *load_tables_ddl("raw"),
    """create table if not exists raw._warehouse (
        warehouse_id varchar not null,
        created_at timestamp not null
    )""",
    """create table if not exists audit.validation_results (
        _load_id varchar,
        month varchar,
        rule varchar,
        severity varchar,
        status varchar,
        failing_rows bigint,
        checked_rows bigint,
        sample varchar,
        validated_at timestamp
    )""",
    # dbt's on-run-start hook (dbt_resale_flat/macros/ensure_audit_tables.sql) keeps a copy of
    # this table, kept equal by tests/test_one_place_per_fact.py.
    """create table if not exists audit.quarantine (
        _load_id varchar,
        _source varchar,
        _source_row bigint,
        month varchar,
        rule varchar,
        detail varchar,
        quarantined_at timestamp
    )""",
    # What each extract-load run said: its source, its load (null: nothing new) and the tap's
    # warnings (a missing month, an unread file, Meltano's state disagreeing...) and notes.
    f"""create table if not exists {EXTRACT_LOADS} (
        finished_at timestamp,
        load_id varchar,
        row_count bigint,
        source varchar,
        warnings varchar[],
        notes varchar[]
    )""",
    # Results are kept per (load, month), the unit the orchestrator validates; files created
    # before the column existed get it appended.
    "alter table audit.validation_results add column if not exists month varchar",
    # One row per (load, month) the gate blocked, appended when it blocks. Raw keeps the rows;
    # a rejected delivery is never its month's latest (the view below leaves it out), and the
    # tap does not load the same content again (see delivery_record).
    f"""create table if not exists {REJECTED_DELIVERIES} (
        _load_id varchar,
        month varchar,
        rule varchar,
        detail varchar,
        rejected_at timestamp
    )""",
    # Each month's latest delivery (greatest _loaded_at) among those the gate did not reject.
    # A load commits all its rows with one _loaded_at, so a month's latest is one load.
    f"""create or replace view {LATEST_DELIVERIES} as
        select delivered.*
        from {RAW_TABLE} as delivered
        where not exists (
            select 1 from {REJECTED_DELIVERIES} as rejected
            where rejected._load_id = delivered._load_id
                and rejected.month is not distinct from delivered.month
        )
        qualify delivered._loaded_at
            = max(delivered._loaded_at) over (partition by delivered.month)""",
]

_LOCK_PID_RE = re.compile(r"PID (\d+)")
# DuckDB's words when another process holds the file: "Could not set lock on file "<path>":
# Conflicting lock is held in <executable> (PID <n>) [by user <u>]".
_LOCK_TEXT_RE = re.compile(r'Could not set lock on file "([^"]+)"|Conflicting lock is held')
# What a process holding the warehouse usually is, from words in its command line.
_HOLDERS = (
    ("ipykernel", "a Jupyter kernel"),
    ("target-hdb-duckdb", "the Meltano loader of another extract-load"),
    ("meltano", "Meltano"),
    ("dagster", "Dagster"),
    ("dbt", "dbt"),
    ("jupyter", "Jupyter"),
)


class NotAWarehouseError(ValueError):
    """The warehouse path names a file that is not a DuckDB database."""


def check_is_duckdb(path: Path) -> None:
    """Refuse a file that is not a DuckDB database before DuckDB touches it (nothing changes)."""
    problem = not_a_warehouse(Path(path))
    if problem:
        raise NotAWarehouseError(problem)


class WarehouseLockedError(RuntimeError):
    """Another process holds the warehouse's write lock."""

    def __init__(self, path: Path, pid: int | None, holder: str | None) -> None:
        self.path = path
        self.pid = pid
        self.holder = holder
        who = f"process {pid}" + (f" ({holder})" if holder else "") if pid else "another process"
        super().__init__(
            f"The warehouse {display_path(path)} is locked by {who}: DuckDB lets one process "
            "write it at a time. Wait for that run to finish, or stop it (in JupyterLab: "
            "Kernel > Shut Down Kernel for a notebook holding a connection; elsewhere "
            + (f"`kill {pid}`" if pid else "stop the other run")
            + "), then try again."
        )


def describe_process(pid: int, fallback: str | None = None) -> str | None:
    """What process ``pid`` is, in a few words (a Jupyter kernel, dbt...), if it can be told."""
    try:
        import psutil

        command = " ".join(psutil.Process(pid).cmdline())
    except Exception:  # gone, not ours to inspect, or psutil missing: say what DuckDB said
        return fallback
    for word, description in _HOLDERS:
        if word in command:
            return description
    return fallback


def lock_error_from_text(path: Path, text: str) -> WarehouseLockedError | None:
    """The :class:`WarehouseLockedError` that DuckDB's message ``text`` (from this process, or
    from Meltano's or dbt's output) describes, or None if it is not about a lock."""
    if not _LOCK_TEXT_RE.search(text):
        return None
    match = _LOCK_PID_RE.search(text)
    pid = int(match.group(1)) if match else None
    held = re.search(r"held in (\S+)", text)
    holder = Path(held.group(1)).name if held else None
    return WarehouseLockedError(path, pid, describe_process(pid, holder) if pid else holder)


def _lock_error(path: Path, exc: duckdb.Error) -> WarehouseLockedError | None:
    text = str(exc)
    found = lock_error_from_text(path, text)
    # "lock" as a word: a corrupt file's "checksum ... in block" is not about a lock.
    if found is not None or not re.search(r"\block", text, re.IGNORECASE):
        return found
    return WarehouseLockedError(path, None, None)


class WarehouseUnavailableError(RuntimeError):
    """The shared warehouse's catalog cannot be reached, or the file cannot be read."""


# DuckDB's words when a file was written by a newer DuckDB than this one.
_NEWER_FILE_RE = re.compile(r"version number|newer version|storage version", re.IGNORECASE)


def open_lake(lake: Lake, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Attach the shared warehouse's DuckLake (as the loader does) and use it."""
    try:
        return connect_lake(lake.catalog, lake.data_path, read_only=read_only)
    except duckdb.Error as exc:
        text = str(exc)
        if read_only and ("does not exist" in text.lower() or "not initialized" in text.lower()):
            raise FileNotFoundError(
                f"The shared warehouse ({lake.describe()}) holds nothing yet: run the "
                "extract-load stage first (make run, or the 01 notebook)."
            ) from None
        raise WarehouseUnavailableError(
            f"The shared warehouse ({lake.describe()}) could not be opened: "
            f"{text.replace(lake.catalog, '<HDB_WAREHOUSE_CATALOG>')}\nCheck HDB_WAREHOUSE_CATALOG "
            "and HDB_WAREHOUSE_DATA_PATH (your instructor's .env lines), and that the class's "
            "PostgreSQL server is running."
        ) from None


def open_warehouse(path: Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the warehouse: the shared DuckLake when the settings name one, else the file
    ``path``, turning DuckDB's lock error into :class:`WarehouseLockedError`."""
    lake = lake_settings()
    if lake is not None:
        return open_lake(lake, read_only=read_only)
    path = Path(path)
    if read_only and not path.exists():
        raise FileNotFoundError(
            f"The warehouse {display_path(path)} does not exist yet: run the extract-load "
            "stage first (make run, or the 01 notebook)."
        )
    check_is_duckdb(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.Error as exc:
        locked = _lock_error(path, exc)
        if locked is not None:
            raise locked from None
        if _NEWER_FILE_RE.search(str(exc)):
            raise WarehouseUnavailableError(
                f"The warehouse {display_path(path)} was written by a newer DuckDB than this "
                f"one ({duckdb.__version__}, the workbook's pin): {exc}\nFix: rebuild it with "
                "this DuckDB (move the file aside, or point HDB_WAREHOUSE_PATH at a new path, "
                "and run make run), or export it with the DuckDB that wrote it (EXPORT "
                "DATABASE) and IMPORT DATABASE it here."
            ) from None
        raise


@contextmanager
def connect(path: Path, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection closed when the block ends, so the file is never held longer than needed."""
    con = open_warehouse(path, read_only=read_only)
    try:
        yield con
    finally:
        con.close()


def _prepare(con: duckdb.DuckDBPyConnection) -> None:
    """Create the warehouse's tables and views if missing. A DuckLake already made is left
    alone: runs of several months start at once, and changing its catalog together would make
    all but one of them fail at commit."""
    if lake_settings() is None:
        for statement in _ddl():
            con.execute(statement)
        return
    if _is_prepared(con):
        return
    # A new lake is made in one transaction, its identity included; when runs start together
    # on a new lake, one makes it and the others find it made.
    con.execute("begin transaction")
    try:
        for statement in _ddl(lake=True):
            con.execute(statement)
        con.execute(
            "insert into raw._warehouse values (?, timezone('UTC', now()))", [uuid.uuid4().hex]
        )
        con.execute("commit")
    except duckdb.Error:
        con.execute("rollback")
        if not _is_prepared(con):
            raise


def _is_prepared(con: duckdb.DuckDBPyConnection) -> bool:
    found = con.execute(
        "select count(*) from information_schema.tables "
        "where table_catalog = current_database() and table_schema = 'raw' "
        "and table_name in ('latest_deliveries', '_warehouse')"
    ).fetchone()[0]
    return found == 2 and bool(con.execute("select count(*) from raw._warehouse").fetchone()[0])


def ensure_warehouse(path: Path) -> str:
    """Create the warehouse's schemas and tables if missing; return its identity."""
    with connect(path) as con:
        _prepare(con)
        row = con.execute("select warehouse_id from raw._warehouse limit 1").fetchone()
        if row is None:
            warehouse_id = uuid.uuid4().hex
            con.execute(
                "insert into raw._warehouse values (?, timezone('UTC', now()))", [warehouse_id]
            )
            return warehouse_id
        return row[0]


def has_latest_deliveries(path: Path) -> bool:
    """Whether the warehouse has the view :data:`LATEST_DELIVERIES` (a file made before it
    existed has not, until :func:`ensure_warehouse` runs on it)."""
    with connect(path, read_only=True) as con:
        found = con.execute(
            "select count(*) from information_schema.tables "
            "where table_catalog = current_database() "
            "and table_schema = 'raw' and table_name = 'latest_deliveries'"
        ).fetchone()
    return bool(found[0])


def describe_warehouse(path: Path) -> str:
    """The warehouse in words: the file ``path``, or the shared DuckLake the settings name."""
    lake = lake_settings()
    return lake.describe() if lake is not None else display_path(Path(path))


def warehouse_exists(path: Path) -> bool:
    """Whether there is a warehouse to read: the file, or a lake holding the raw layer."""
    if lake_settings() is None:
        return Path(path).exists()
    try:
        return has_latest_deliveries(path)
    except FileNotFoundError:
        return False


def ensure_latest_deliveries(path: Path) -> None:
    """Make sure a stage reading :data:`LATEST_DELIVERIES` finds it: a warehouse created
    before the view existed gets it (and ``audit.rejected_deliveries``) here. A missing
    warehouse is left to the reader, whose read-only open says to run extract-load first."""
    if lake_settings() is not None:
        return  # a lake is made with the view (ensure_warehouse, before its first load)
    if Path(path).exists() and not has_latest_deliveries(path):
        ensure_warehouse(path)


def rejected_deliveries(
    con: duckdb.DuckDBPyConnection, month: str | None = None
) -> list[tuple[str, str, str, str, object]]:
    """The rejected deliveries (load id, month, rule, detail, rejected at), oldest first,
    optionally of one month only."""
    return con.execute(
        f"""select _load_id, month, rule, detail, rejected_at from {REJECTED_DELIVERIES}
            where ?::varchar is null or month = ?
            order by rejected_at, _load_id, month""",
        [month, month],
    ).fetchall()


def query_df(
    path: Path, sql: str, params: list | None = None, *, arrow: bool = False
) -> pd.DataFrame:
    """Run a read-only query and return a pandas DataFrame, closing the file at once.

    ``arrow=True`` fetches through Arrow: for raw rows (text, integers and timestamps, none
    missing) the same frame as DuckDB's ``.df()``, in a sixth of the time and under half the
    memory at a million rows, as Arrow hands text to pandas' string columns without building a
    Python object per value. Other types convert differently (decimals become Python objects,
    integers with nulls floats), hence ``.df()`` by default.
    """
    with connect(path, read_only=True) as con:
        if arrow:
            return con.sql(sql, params=params or []).to_arrow_table().to_pandas()
        return con.execute(sql, params or []).df()


def _record_unrecorded_months(con: duckdb.DuckDBPyConnection) -> None:
    """Fill ``raw._load_months`` for loads made before it existed, from their raw rows (the
    fingerprint is the tap's: the rows' values in delivery order)."""
    missing = con.execute(
        f"""select distinct _load_id, month from {RAW_TABLE} as r
            where not exists (
                select 1 from raw._load_months as m
                where m.load_id = r._load_id and m.month = r.month
            )
            order by all"""
    ).fetchall()
    source_columns = ", ".join(SOURCE_COLUMNS)
    for load_id, month in missing:
        found = con.execute(
            f"""select _source, _source_row, {source_columns} from {RAW_TABLE}
                where _load_id = ? and month = ? order by _source, _source_row""",
            [load_id, month],
        ).fetchall()
        rows = [Row(line, tuple(values)) for _, line, *values in found]
        con.execute(
            "insert into raw._load_months values (?, 'resale_flat_prices', ?, ?, ?, ?)",
            [load_id, month, len(rows), fingerprint(rows), found[0][0]],
        )


def delivery_record(path: Path) -> dict[str, dict]:
    """What the warehouse holds, month by month: the rows and fingerprint of the latest
    accepted delivery (``raw.latest_deliveries``), and every delivery the gate rejected.

    This, not Meltano's state, is what the tap compares deliveries with: a copied or restored
    warehouse loads exactly what it lacks.
    """
    with connect(path) as con:
        _prepare(con)
        if lake_settings() is None:  # a lake is younger than raw._load_months
            _record_unrecorded_months(con)
        accepted = con.execute(
            f"""select month, row_count, fingerprint from raw._load_months
                where stream = 'resale_flat_prices'
                  and (load_id, month) in (select distinct _load_id, month
                                           from {LATEST_DELIVERIES})"""
        ).fetchall()
        rejected = con.execute(
            f"""select m.month, m.fingerprint, m.source, x.rule,
                       strftime(x.rejected_at, '%Y-%m-%d %H:%M UTC')
                from {REJECTED_DELIVERIES} as x
                join raw._load_months as m on m.load_id = x._load_id and m.month = x.month
                order by x.rejected_at"""
        ).fetchall()
    record: dict[str, dict] = {
        month: {"rows": rows, "fingerprint": print_, "rejected": []}
        for month, rows, print_ in accepted
    }
    for month, print_, source, rule, when in rejected:
        entry = record.setdefault(month, {"rows": 0, "fingerprint": None, "rejected": []})
        entry["rejected"].append(
            {"fingerprint": print_, "source": source, "rule": rule, "rejected_at": when}
        )
    return dict(sorted(record.items()))
