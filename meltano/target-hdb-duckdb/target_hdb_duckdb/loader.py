"""Write Singer streams into DuckDB: append-only, one transaction per run, with load metadata.

Every run is one load: its rows get the same ``_load_id`` and ``_loaded_at``, a row in
``<schema>._loads`` says what it held, and ``<schema>._load_months`` records each month it
delivered: rows, the tap's fingerprint of their content and the source. That record, not
Meltano's state, is what the next run compares deliveries with. Nothing is visible until
:meth:`DuckDBLoader.commit`; :meth:`DuckDBLoader.abort` (or a crash) leaves the database
exactly as it was.

Rows arrive as RECORD messages (buffered, then inserted in batches) or as BATCH messages
naming Parquet or JSON Lines files, which DuckDB reads straight into the table
(:meth:`DuckDBLoader.add_batch`), inside the same transaction.

The database is a DuckDB file, or the shared warehouse's DuckLake (a PostgreSQL catalog and a
folder of Parquet files: :mod:`target_hdb_duckdb.lake`), where the run is one DuckLake
transaction: one snapshot, or nothing.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import duckdb

from target_hdb_duckdb.lake import connect_lake

_IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
METADATA_COLUMNS = {"_load_id": "varchar", "_loaded_at": "timestamp"}


class LoaderError(RuntimeError):
    """The stream cannot be loaded as sent; the message says why."""


def quote(name: str) -> str:
    """Quote an identifier, refusing names that are not plain letters, digits and underscores."""
    if not _IDENTIFIER_RE.match(name):
        raise LoaderError(
            f"{name!r} cannot be a table or column name: use letters, digits and underscores."
        )
    return f'"{name}"'


def duckdb_type(json_schema: dict[str, Any]) -> str:
    """The DuckDB type for a JSON-schema property. Strings stay text: raw keeps what was sent."""
    types = json_schema.get("type", "string")
    if isinstance(types, str):
        types = [types]
    types = [t for t in types if t != "null"] or ["string"]
    kind = types[0] if len(types) == 1 else "string"
    return {
        "integer": "bigint",
        "number": "double",
        "boolean": "boolean",
        "object": "json",
        "array": "json",
    }.get(kind, "varchar")


def load_tables_ddl(schema: str, *, lake: bool = False) -> list[str]:
    """The statements creating ``<schema>._loads`` and ``<schema>._load_months`` if missing.

    The one definition of the loader's record: the workbook's warehouse
    (hdb_elt.warehouse.ensure_warehouse) creates the same tables with these statements.
    DuckLake has no keys (``lake``): there the load id is unique by construction (a UUID).
    """
    key = "" if lake else " primary key"
    return [
        f"""create table if not exists {quote(schema)}._loads (
            load_id varchar{key},
            stream varchar,
            started_at timestamp,
            committed_at timestamp,
            row_count bigint,
            months varchar[]
        )""",
        # Each month a load delivered, with the tap's fingerprint of its rows: the warehouse's
        # own record of what is loaded.
        f"""create table if not exists {quote(schema)}._load_months (
            load_id varchar,
            stream varchar,
            month varchar,
            row_count bigint,
            fingerprint varchar,
            source varchar
        )""",
    ]


def batch_paths(manifest: list[str]) -> list[str]:
    """The local files a BATCH message's manifest names (``file://`` URLs or plain paths)."""
    if not manifest:
        raise LoaderError("A BATCH message names no files (its manifest is empty).")
    paths = []
    for entry in manifest:
        url = urlparse(entry)
        if url.scheme not in ("", "file"):
            raise LoaderError(
                f"BATCH file {entry} is not on this machine: this loader reads file:// URLs."
            )
        path = Path(unquote(url.path) if url.scheme else entry)
        if not path.is_file():
            raise LoaderError(
                f"BATCH file {path} does not exist: the tap wrote it elsewhere, or it was "
                "removed before the load. Nothing was loaded; run again."
            )
        paths.append(str(path))
    return paths


@dataclass
class _Stream:
    table: str
    columns: list[str]
    types: list[str]
    rows: list[tuple] = field(default_factory=list)
    row_count: int = 0
    month_counts: dict[str, int] = field(default_factory=dict)
    month_sources: dict[str, str | None] = field(default_factory=dict)


class DuckDBLoader:
    """Buffers records per stream and inserts them in batches inside one open transaction."""

    def __init__(
        self,
        database_path: str | Path | None,
        schema: str = "raw",
        batch_rows: int = 50_000,
        *,
        catalog: str | None = None,
        data_path: str | Path | None = None,
    ):
        """Open the DuckDB file ``database_path``, or, given ``catalog`` (a libpq connection
        string) and ``data_path``, the shared warehouse's DuckLake."""
        self.schema = schema
        self.batch_rows = batch_rows
        self.load_id = uuid.uuid4().hex
        self.lake = bool(catalog)
        if catalog:
            if not data_path:
                raise LoaderError(
                    "Setting data_path is required with catalog: the shared folder of the "
                    "warehouse's Parquet files (HDB_WAREHOUSE_DATA_PATH)."
                )
            self.con = connect_lake(catalog, data_path)
        else:
            path = Path(database_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.con = duckdb.connect(str(path))
        self.streams: dict[str, _Stream] = {}
        # The files of the BATCH messages loaded: removed once the load has committed.
        self.batch_files: list[str] = []
        self.con.execute("begin transaction")
        self.con.execute(f"create schema if not exists {quote(schema)}")
        for statement in load_tables_ddl(schema, lake=self.lake):
            self.con.execute(statement)
        # Strictly increasing from load to load, so "latest delivery" never ties.
        self.loaded_at = self.con.execute(
            f"""select greatest(timezone('UTC', now()),
                   coalesce(max(committed_at), '1970-01-01') + interval 1 microsecond)
                from {quote(schema)}._loads"""
        ).fetchone()[0]

    def register(self, stream: str, schema: dict[str, Any]) -> None:
        """Create or widen the stream's table from a SCHEMA message."""
        properties = schema.get("properties") or {}
        if not properties:
            raise LoaderError(f"SCHEMA for stream {stream!r} has no properties.")
        if stream in self.streams:
            self._flush(self.streams[stream])
        table = f"{quote(self.schema)}.{quote(stream)}"
        wanted = {name: duckdb_type(prop) for name, prop in properties.items()}
        wanted.update(METADATA_COLUMNS)
        existing = {
            row[0]
            for row in self.con.execute(
                "select column_name from information_schema.columns "
                "where table_schema = ? and table_name = ?",
                [self.schema, stream],
            ).fetchall()
        }
        if not existing:
            columns_sql = ", ".join(f"{quote(n)} {t}" for n, t in wanted.items())
            self.con.execute(f"create table {table} ({columns_sql})")
            if self.lake and "month" in wanted:
                # Runs of different months then write different files, so they can commit
                # at the same time (DuckLake refuses two transactions deleting from one file).
                self.con.execute(f"alter table {table} set partitioned by (month)")
        else:
            for name, kind in wanted.items():
                if name not in existing:
                    self.con.execute(f"alter table {table} add column {quote(name)} {kind}")
        previous = self.streams.get(stream)
        self.streams[stream] = _Stream(
            table=table,
            columns=list(properties),
            types=[wanted[name] for name in properties],
            row_count=previous.row_count if previous else 0,
            month_counts=previous.month_counts if previous else {},
            month_sources=previous.month_sources if previous else {},
        )

    def add(self, stream: str, record: dict[str, Any]) -> None:
        """Buffer one record; flush the stream's buffer when it is full."""
        state = self.streams.get(stream)
        if state is None:
            raise LoaderError(f"RECORD for stream {stream!r} arrived before its SCHEMA.")
        unknown = record.keys() - set(state.columns)
        if unknown:
            raise LoaderError(
                f"RECORD for stream {stream!r} has fields not in its SCHEMA: {sorted(unknown)}."
            )
        state.rows.append(tuple(record.get(name) for name in state.columns))
        state.row_count += 1
        month = record.get("month")
        if month is not None:
            if month not in state.month_counts:
                state.month_sources[month] = record.get("_source")
            state.month_counts[month] = state.month_counts.get(month, 0) + 1
        if len(state.rows) >= self.batch_rows:
            self._flush(state)

    def add_batch(self, stream: str, encoding: dict[str, Any], manifest: list[str]) -> int:
        """Insert the rows of a BATCH message's files, count them by month; return the rows.

        The files' columns must be the stream's, and a column the table keeps as text must be
        text in the files: a value is loaded as delivered or not at all. The files are read
        inside this run's transaction, so they land with the rest of the run or not at all.
        """
        state = self.streams.get(stream)
        if state is None:
            raise LoaderError(f"BATCH for stream {stream!r} arrived before its SCHEMA.")
        paths = batch_paths(manifest)
        kind = (encoding or {}).get("format")
        if kind == "parquet":
            source = "read_parquet($files)"
        elif kind == "jsonl":
            types = dict(zip(state.columns, state.types, strict=True))
            # quote() lets through letters, digits and underscores only: safe in '...' too.
            columns = "{" + ", ".join(f"'{quote(n)[1:-1]}': '{t}'" for n, t in types.items()) + "}"
            source = f"read_json($files, format = 'newline_delimited', columns = {columns})"
        else:
            raise LoaderError(
                f"BATCH for stream {stream!r} is encoded as {kind!r}: this loader reads "
                "parquet and jsonl batch files."
            )
        self._flush(state)
        found = self.con.execute(f"describe select * from {source}", {"files": paths}).fetchall()
        sent = {row[0]: row[1] for row in found}
        if kind == "jsonl":  # read_json takes the declared columns: look for any other key
            sent = {
                row[0]: "VARCHAR"
                for row in self.con.execute(
                    "select distinct unnest(json_keys(json)) from read_json_objects($files)",
                    {"files": paths},
                ).fetchall()
            }
        unknown = sent.keys() - set(state.columns)
        if unknown:
            raise LoaderError(
                f"BATCH for stream {stream!r} has fields not in its SCHEMA: {sorted(unknown)} "
                f"(files {', '.join(paths)})."
            )
        for name, kind in zip(state.columns, state.types, strict=True):
            if name in sent and kind == "varchar" and sent[name] != "VARCHAR":
                raise LoaderError(
                    f"BATCH for stream {stream!r}: column {name} is {sent[name]} in the files "
                    f"{', '.join(paths)}, where the stream sends text: raw keeps values as "
                    "delivered, so it takes text only."
                )
        names = ", ".join(quote(n) for n in sent)
        self.con.execute(
            f"insert into {state.table} ({names}, _load_id, _loaded_at) "
            f"select {names}, $load_id, $loaded_at from {source}",
            {"files": paths, "load_id": self.load_id, "loaded_at": self.loaded_at},
        )
        self.batch_files += paths
        if "month" not in sent:
            count = f"select count(*) from {source}"
            (rows,) = self.con.execute(count, {"files": paths}).fetchone()
            state.row_count += rows
            return rows
        source_column = "min(_source)" if "_source" in sent else "null"
        total = 0
        for month, rows, first_source in self.con.execute(
            f"select month, count(*), {source_column} from {source} group by month",
            {"files": paths},
        ).fetchall():
            total += rows
            if month is not None:
                state.month_sources.setdefault(month, first_source)
                state.month_counts[month] = state.month_counts.get(month, 0) + rows
        state.row_count += total
        return total

    def _flush(self, state: _Stream) -> None:
        if not state.rows:
            return
        import pandas as pd  # only RECORD messages need it: a BATCH run starts without it

        incoming = pd.DataFrame.from_records(state.rows, columns=state.columns)
        for name in state.columns:
            incoming[name] = incoming[name].astype(object)
        names = ", ".join(quote(n) for n in state.columns)
        # DuckDB reads the frame by its variable name (a replacement scan), not through
        # con.register(): a registered frame stays referenced until the transaction ends, so
        # a million-row load held every batch in memory (1.2 GB) until its commit.
        self.con.execute(
            f"insert into {state.table} ({names}, _load_id, _loaded_at) "
            f"select {names}, ?, ? from incoming",
            [self.load_id, self.loaded_at],
        )
        state.rows.clear()

    def unconfirmed_months(self, state: object) -> list[str]:
        """Months received whose row count the tap's closing state does not confirm.

        A tap that finished a month records ``bookmarks.<stream>.months.<month>.rows`` in its
        closing state. A sync cut short (a crash, or SIGTERM, on which singer-sdk still writes
        the state it had) cannot confirm the month it was in the middle of.
        """
        problems = []
        bookmarks = state.get("bookmarks", {}) if isinstance(state, dict) else {}
        for stream, info in self.streams.items():
            claimed = (bookmarks.get(stream) or {}).get("months") or {}
            for month, count in sorted(info.month_counts.items()):
                rows = (claimed.get(month) or {}).get("rows")
                if rows != count:
                    problems.append(f"{stream} {month}: received {count}, state says {rows}")
        return problems

    def commit(self, closing_state: object = None) -> dict[str, int]:
        """Flush everything, record the load and its months, commit; returns rows per stream.

        Each month's fingerprint comes from the tap's closing ``state``
        (``bookmarks.<stream>.months.<month>.fingerprint``; null when the tap has none).
        """
        bookmarks = closing_state.get("bookmarks", {}) if isinstance(closing_state, dict) else {}
        counts: dict[str, int] = {}
        for stream, state in self.streams.items():
            self._flush(state)
            if state.row_count == 0:
                continue
            counts[stream] = state.row_count
            columns = {c for c in state.columns}
            months_sql = (
                f"(select list(distinct month order by month) from {state.table} "
                "where _load_id = $1)"
                if "month" in columns
                else "null"
            )
            self.con.execute(
                f"""insert into {quote(self.schema)}._loads
                    select $1, $2, $3, timezone('UTC', now()), $4, {months_sql}""",
                [self.load_id, stream, self.loaded_at, state.row_count],
            )
            claimed = (bookmarks.get(stream) or {}).get("months") or {}
            for month, rows in sorted(state.month_counts.items()):
                self.con.execute(
                    f"insert into {quote(self.schema)}._load_months values (?, ?, ?, ?, ?, ?)",
                    [
                        self.load_id,
                        stream,
                        month,
                        rows,
                        (claimed.get(month) or {}).get("fingerprint"),
                        state.month_sources.get(month),
                    ],
                )
        self.con.execute("commit")
        self.con.close()
        return counts

    def abort(self) -> None:
        """Roll back everything this run wrote."""
        try:
            self.con.execute("rollback")
        finally:
            self.con.close()
