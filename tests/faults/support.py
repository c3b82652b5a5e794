"""What the fault-injection suite shares: a pipeline on copies of the shared data that can be
cloned cheaply, a run of the real stages, and fingerprints of raw, the marts and the state.

A :class:`Pipeline` is everything a run persists: the deliveries folder, the DuckDB warehouse
and Meltano's system database (which holds the state). Cloning copies all three, so a clone
starts exactly where its original stopped and the two never share state. (The warehouse's id,
which names its Meltano state, is copied too; that is harmless because each clone has its
own system database.)
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import duckdb
import pytest

from hdb_elt.extract_load import ExtractLoadError, ExtractLoadResult, run_extract_load, state_id
from hdb_elt.settings import Settings, load_settings
from hdb_elt.test import raise_on_failures, reconciliation, run_tests
from hdb_elt.transform import build_models
from hdb_elt.validation import (
    DEFAULT_MAX_QUARANTINE_FRACTION,
    NothingToValidate,
    ValidationBlocked,
    ValidationReport,
    raise_if_blocked,
    read_deliveries,
    record_results,
    validate_load,
)
from hdb_elt.warehouse import (
    LATEST_DELIVERIES,
    SOURCE_COLUMNS,
    WarehouseLockedError,
    rejected_deliveries,
)

# Differ from one load to the next by design (ids, times), or name a local path.
LOAD_COLUMNS = ("_load_id", "_loaded_at")
# Where a row came from: the same sales delivered in another file differ only here.
ORIGIN_COLUMNS = ("_source", "_source_row")
MONTH_FILE = "resale-flat-prices-{}.csv"


def delivery_name(month: str) -> str:
    return MONTH_FILE.format(month)


@dataclass
class Outcome:
    """How one run of the pipeline ended: the stage that stopped it (None: it completed) and
    what it said (the error, or the warnings and findings of a completed run)."""

    stage: str | None
    message: str
    extract: ExtractLoadResult | None = None
    report: ValidationReport | None = None


@dataclass
class Pipeline:
    """The persistent state of one pipeline: deliveries, warehouse, Meltano's system db."""

    root: Path
    start: str = "2023-01"
    end: str = "2023-03"
    env: dict[str, str] = field(default_factory=dict)

    @property
    def deliveries(self) -> Path:
        return self.root / "in"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse" / "hdb_resale.duckdb"

    @property
    def meltano_db(self) -> Path:
        return self.root / "meltano.db"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    def environment(self) -> dict[str, str]:
        """The variables a process of this pipeline needs (the settings come separately)."""
        return {
            "MELTANO_DATABASE_URI": f"sqlite:///{self.meltano_db}",
            "HDB_RESALE_DATA_DIR": str(self.deliveries),
            "HDB_WAREHOUSE_PATH": str(self.warehouse),
            "HDB_START_MONTH": self.start,
            "HDB_END_MONTH": self.end,
            "HDB_LOOKBACK_MONTHS": "1",
            **self.env,
        }

    def activate(self, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
        """Point this process's environment (Meltano's system db above all) at this pipeline."""
        for name, value in self.environment().items():
            monkeypatch.setenv(name, value)
        return self

    def settings(self, start: str | None = None, end: str | None = None) -> Settings:
        values = {**self.environment()}
        values.update({"HDB_START_MONTH": start or self.start, "HDB_END_MONTH": end or self.end})
        return load_settings(values, dotenv=False)

    def clone(self, root: Path) -> Pipeline:
        """A copy that starts exactly where this one stopped (files closed: nothing runs)."""
        shutil.copytree(self.deliveries, root / "in")
        (root / "warehouse").mkdir(parents=True)
        for source, dest in ((self.warehouse, root / "warehouse"), (self.meltano_db, root)):
            for suffix in ("", ".wal", "-wal", "-shm"):  # DuckDB's and SQLite's side files
                side = source.with_name(source.name + suffix)
                if side.exists():
                    shutil.copy2(side, dest / side.name)
        return replace(self, root=root)

    def run(
        self,
        start: str | None = None,
        end: str | None = None,
        *,
        max_quarantine_fraction: float = DEFAULT_MAX_QUARANTINE_FRACTION,
        dbt_tests: bool = False,
        build: bool = True,
    ) -> Outcome:
        """The stages as the notebooks call them: extract-load, the validation gate, dbt build,
        then dbt's tests (when asked: they take seconds) or the reconciliation alone.
        ``build=False`` stops after the gate."""
        settings = self.settings(start, end)
        try:
            extract = run_extract_load(settings, log_dir=self.log_dir)
        except (ExtractLoadError, WarehouseLockedError) as error:
            return Outcome("extract-load", str(error))
        try:
            rows = read_deliveries(
                settings.warehouse_path, settings.start_month, settings.end_month
            )
        except NothingToValidate as error:
            return Outcome("validate", str(error), extract)
        report = validate_load(
            rows,
            settings.start_month,
            settings.end_month,
            max_quarantine_fraction=max_quarantine_fraction,
        )
        record_results(settings.warehouse_path, report)
        try:
            raise_if_blocked(report)
        except ValidationBlocked as error:
            return Outcome("validate", str(error), extract, report)
        if build:
            failed = self.transform(settings, dbt_tests=dbt_tests)
            if failed:
                return Outcome("test", failed, extract, report)
        return Outcome(None, findings(extract, report), extract, report)

    def transform(self, settings: Settings | None = None, *, dbt_tests: bool = False) -> str:
        """dbt build of the window, then dbt's tests or the reconciliation alone; returns the
        test stage's error ("" when it passed)."""
        settings = settings or self.settings()
        build_models(settings)
        recon = reconciliation(settings.warehouse_path, settings.start_month, settings.end_month)
        if dbt_tests:
            try:
                raise_on_failures(run_tests(settings), recon)
            except Exception as error:
                return str(error)
        else:
            assert (recon["status"] != "mismatch").all(), recon
        return ""


def findings(extract: ExtractLoadResult, report: ValidationReport) -> str:
    """A completed run's words: what landed (with the tap's warnings and notes), the gate's
    summary, and each row it quarantined or warned about (file, line, column, rule)."""
    lines = [extract.summary(), report.summary()]
    flagged = report.failures[report.failures["severity"].isin(["quarantine", "warning"])]
    for row in flagged.to_dict("records"):
        lines.append(
            f"{Path(row['_source']).name} line {row['_source_row']}: {row['detail']} "
            f"(rule {row['rule']}, {row['severity']})"
        )
    return "\n".join(lines)


# --- fingerprints --------------------------------------------------------------------------


def _connect(warehouse: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(warehouse), read_only=True)


def mart_tables(warehouse: Path) -> list[str]:
    with _connect(warehouse) as con:
        return [
            name
            for (name,) in con.execute(
                "select table_name from information_schema.tables "
                "where table_schema = 'marts' order by 1"
            ).fetchall()
        ]


def _checksum_sql(table: str, columns: list[str], drop: tuple[str, ...], group: str | None) -> str:
    """md5 of the rows as text, in the order of that text (a total order: the fact's rows have
    unique ids), optionally per ``group`` (month_key). ``_source`` keeps its file name only."""
    kept = [
        "regexp_extract(_source, '[^/]*$') as _source" if c == "_source" else f'"{c}"'
        for c in columns
        if c not in drop
    ]
    rows = f"select {', '.join(kept)} from marts.{table}"
    row_text = "cast(r as varchar)"
    if group:
        return (
            f"select r.{group}, md5(string_agg({row_text}, chr(10) order by {row_text})) "
            f"from ({rows}) as r group by 1 order by 1"
        )
    return f"select md5(string_agg({row_text}, chr(10) order by {row_text})) from ({rows}) as r"


def mart_checksums(warehouse: Path, *, ignore: tuple[str, ...] = ()) -> dict[str, str]:
    """An ordered checksum of every mart. With ``ignore=()`` it is byte-for-byte (every
    column); ``ignore=LOAD_COLUMNS`` compares marts built by different loads of the same
    deliveries (ids and times differ by design, file paths are compared by name)."""
    with _connect(warehouse) as con:
        sums = {}
        for table in mart_tables(warehouse):
            columns = [
                d[0] for d in con.execute(f"select * from marts.{table} limit 0").description
            ]
            sums[table] = con.execute(_checksum_sql(table, columns, ignore, None)).fetchone()[0]
        return sums


def fact_checksums_by_month(warehouse: Path, *, ignore: tuple[str, ...] = ()) -> dict[str, str]:
    with _connect(warehouse) as con:
        table = "fct_resale_transactions"
        columns = [d[0] for d in con.execute(f"select * from marts.{table} limit 0").description]
        return dict(con.execute(_checksum_sql(table, columns, ignore, "month_key")).fetchall())


def raw_snapshot(warehouse: Path) -> dict[str, object]:
    """Every raw row and every committed load, as checksums and counts."""
    with _connect(warehouse) as con:
        rows, digest = con.execute(
            "select count(*), md5(string_agg(cast(r as varchar), chr(10) "
            "order by _loaded_at, _source, _source_row)) from raw.resale_flat_prices as r"
        ).fetchone()
        loads = con.execute(
            "select load_id, row_count, months from raw._loads order by started_at"
        ).fetchall()
    return {"rows": rows, "digest": digest, "loads": loads}


def load_rows(warehouse: Path, load_id: str) -> list[tuple[str, ...]]:
    """The source values of one load, in delivery order."""
    with _connect(warehouse) as con:
        return con.execute(
            f"select {', '.join(SOURCE_COLUMNS)} from raw.resale_flat_prices "
            "where _load_id = ? order by _source, _source_row",
            [load_id],
        ).fetchall()


def warehouse_id(warehouse: Path) -> str:
    with _connect(warehouse) as con:
        return con.execute("select warehouse_id from raw._warehouse").fetchone()[0]


def meltano_state(pipeline: Pipeline) -> dict[str, dict]:
    """Meltano's state for the pipeline's warehouse, read from its system db directly (the
    same rows ``meltano state get`` merges; the suite checks the two agree once): the months
    bookmark of the completed state, and the partial state (only a failed run leaves one)."""
    key = state_id(warehouse_id(pipeline.warehouse))
    with sqlite3.connect(pipeline.meltano_db) as con:
        row = con.execute(
            "select completed_state, partial_state from state where state_id = ?", [key]
        ).fetchone()
    if row is None:
        return {"months": {}, "partial": {}}
    completed = json.loads(row[0] or "{}")
    bookmarks = completed.get("singer_state", {}).get("bookmarks", {})
    return {
        "months": bookmarks.get("resale_flat_prices", {}).get("months", {}),
        "partial": json.loads(row[1] or "{}"),
    }


def rejected(warehouse: Path) -> list[tuple[str, str, str]]:
    """(load id, month, rule) of every delivery the gate rejected, oldest first."""
    with _connect(warehouse) as con:
        return [row[:3] for row in rejected_deliveries(con)]


def accepted_counts(warehouse: Path) -> dict[str, int]:
    """Rows per month of the latest accepted deliveries (the view downstream reads)."""
    with _connect(warehouse) as con:
        return dict(
            con.execute(
                f"select month, count(*) from {LATEST_DELIVERIES} group by all order by 1"
            ).fetchall()
        )


def latest_counts(warehouse: Path) -> dict[str, int]:
    """Rows per month of the latest delivery that landed, accepted or not (what Meltano's
    state records)."""
    with _connect(warehouse) as con:
        return dict(
            con.execute(
                "select month, count(*) from (select month from raw.resale_flat_prices "
                "qualify _loaded_at = max(_loaded_at) over (partition by month)) "
                "group by all order by 1"
            ).fetchall()
        )


def state_matches_raw(pipeline: Pipeline) -> None:
    """Every month Meltano's state claims landed in full: the warehouse's latest delivery of
    that month has exactly the rows the state records."""
    state = meltano_state(pipeline)
    assert state["partial"] == {}
    latest = latest_counts(pipeline.warehouse)
    claimed = {month: entry["rows"] for month, entry in state["months"].items()}
    assert claimed == {month: latest.get(month) for month in claimed}


# --- deliveries ----------------------------------------------------------------------------


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def write_csv(path: Path, header: list[str], rows: list[list[str]], **options: str) -> Path:
    encoding = options.get("encoding", "utf-8")
    with path.open("w", encoding=encoding, newline="") as handle:
        csv.writer(handle, lineterminator=options.get("newline", "\n")).writerows([header, *rows])
    return path


def delivered_values(path: Path) -> list[tuple[str, ...]]:
    """A delivery's rows as the raw layer must keep them: the eleven values, by column name."""
    header, rows = read_csv(path)
    index = [header.index(column) for column in SOURCE_COLUMNS]
    return [tuple(row[i] for i in index) for row in rows if row]


def set_column(rows: list[list[str]], header: list[str], column: str, value: str, at: list[int]):
    """``rows`` with ``column`` set to ``value`` on the given CSV lines (the header is line 1)."""
    position = header.index(column)
    changed = [list(row) for row in rows]
    for line in at:
        changed[line - 2][position] = value
    return changed


Maker = Callable[[Path, Path], None]


def env_without(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names}
