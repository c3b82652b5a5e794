"""A raw layer for dbt tests without Meltano: load CSV deliveries the way the contract says.

``load_deliveries`` writes one load (one ``_load_id``, one ``_loaded_at``, one row in
``raw._loads``) into ``raw.resale_flat_prices``, source values as text, exactly as the
Meltano loader will (data/README.md). Tests and the benchmark build warehouses with it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hdb_elt.settings import REPO_ROOT, Settings, load_settings
from hdb_elt.transform import run_dbt
from hdb_elt.warehouse import (
    LATEST_DELIVERIES,
    RAW_TABLE,
    SOURCE_COLUMNS,
    connect,
    dataset_id_sql,
    ensure_warehouse,
)

SHARED_MONTHLY_DIR = REPO_ROOT.parent / "shared" / "data" / "hdb_resale" / "monthly"
SHARED_TOTAL_ROWS = 25_777
MARTS = ("fct_resale_transactions", "dim_town", "dim_flat_type", "agg_monthly_town_prices")


def shared_month_files() -> list[Path]:
    """The 12 reference deliveries of 2023, oldest first (empty if the folder is absent)."""
    return sorted(SHARED_MONTHLY_DIR.glob("resale-flat-prices-*.csv"))


def load_deliveries(
    warehouse: Path, files: Iterable[Path], *, stream: str = "resale_flat_prices"
) -> str:
    """Append the CSV files to the raw layer as one load and return its load id.

    ``_source`` is the file path, ``_source_row`` the CSV line number (header = line 1),
    ``_loaded_at`` a UTC timestamp later than every earlier load's.
    """
    files = [Path(f).resolve() for f in files]
    ensure_warehouse(warehouse)
    load_id = str(uuid.uuid4())
    with connect(warehouse) as con:
        con.execute("begin")
        started_at = datetime.now(UTC).replace(tzinfo=None)
        (previous,) = con.execute(f"select max(_loaded_at) from {RAW_TABLE}").fetchone()
        loaded_at = started_at
        if previous is not None and loaded_at <= previous:
            loaded_at = previous + timedelta(seconds=1)
        for path in files:
            # A column the file's resource lacks (remaining_lease before 2015) is null, as the
            # loader writes it; the dataset id follows from the month, as the tap's does.
            with path.open(encoding="utf-8-sig", newline="") as handle:
                header = next(csv.reader(handle))
            columns = ", ".join(c if c in header else f"null as {c}" for c in SOURCE_COLUMNS)
            # row_number over the scan keeps file order (DuckDB preserves insertion order);
            # + 1 because the header is line 1.
            con.execute(
                f"""
                insert into {RAW_TABLE} by name
                select {columns}, ? as _source, row_number() over () + 1 as _source_row,
                    ? as _load_id, ? as _loaded_at, {dataset_id_sql()} as _dataset_id
                from read_csv(?, all_varchar = true, header = true)
                """,
                [str(path), load_id, loaded_at, str(path)],
            )
        row_count, months = con.execute(
            f"select count(*), list(distinct month order by month) from {RAW_TABLE} "
            "where _load_id = ?",
            [load_id],
        ).fetchone()
        con.execute(
            "insert into raw._loads values (?, ?, ?, ?, ?, ?)",
            [load_id, stream, started_at, loaded_at, row_count, months or []],
        )
        con.execute("commit")
    return load_id


def quarantine_rows(warehouse: Path, month: str, source_rows: Sequence[int], rule: str) -> None:
    """Quarantine rows (CSV lines) of the latest accepted delivery of ``month``, as validate
    would."""
    with connect(warehouse) as con:
        con.execute(
            f"""
            insert into audit.quarantine
            select
                _load_id, _source, _source_row, month, ?, 'quarantined by a test',
                now()::timestamp
            from {LATEST_DELIVERIES}
            where month = ? and list_contains(?, _source_row)
            """,
            [rule, month, list(source_rows)],
        )


def redeliver(
    source: Path, dest: Path, *, drop_lines: Sequence[int], add_rows: Sequence[Sequence[str]]
) -> Path:
    """Write a changed delivery of a month: ``source`` without the given CSV lines, plus rows.

    Lines count as in ``_source_row`` (header = line 1).
    """
    with source.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    kept = [row for line, row in enumerate(rows, start=1) if line not in set(drop_lines)]
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerows(kept)
        writer.writerows(add_rows)
    return dest


def dbt_settings(warehouse: Path) -> Settings:
    """Settings pointing at ``warehouse`` (a temp file), the rest from defaults."""
    return replace(load_settings(env={}, dotenv=False), warehouse_path=Path(warehouse))


def dbt(args: list[str], warehouse: Path, target_dir: Path) -> tuple[int, str, dict]:
    """Run dbt on ``warehouse`` with its own target and log folders (so runs never clash).

    Returns (returncode, output, run_results as a dict, empty if dbt wrote none).
    """
    results_path = target_dir / "run_results.json"
    if results_path.exists():
        results_path.unlink()
    done = run_dbt(
        [*args, "--target-path", str(target_dir), "--log-path", str(target_dir / "logs")],
        dbt_settings(warehouse),
        capture=True,
    )
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    return done.returncode, done.stdout + done.stderr, results


def statuses(run_results: dict) -> dict[str, str]:
    """``{unique_id: status}`` of a run_results.json."""
    return {r["unique_id"]: r["status"] for r in run_results.get("results", [])}


def table_checksum(warehouse: Path, table: str, order_by: str) -> tuple[int, str]:
    """(row count, sha256 of every row in a fixed order): equal means identical tables."""
    with connect(warehouse, read_only=True) as con:
        rows = con.execute(f"select * from {table} order by {order_by}").fetchall()
    digest = hashlib.sha256(repr(rows).encode()).hexdigest()
    return len(rows), digest


MART_ORDER = {
    "fct_resale_transactions": "transaction_id",
    "dim_town": "town",
    "dim_flat_type": "flat_type",
    "agg_monthly_town_prices": "month_key, town, flat_type",
}


def mart_checksums(warehouse: Path) -> dict[str, tuple[int, str]]:
    """Checksums of every mart, ordered by its key."""
    return {
        name: table_checksum(warehouse, f"marts.{name}", order)
        for name, order in MART_ORDER.items()
    }


def copy_warehouse(source: Path, dest: Path) -> Path:
    """A copy of a (closed) warehouse file, to tamper with without touching the original."""
    shutil.copyfile(source, dest)
    wal = source.with_name(source.name + ".wal")
    if wal.exists():
        shutil.copyfile(wal, dest.with_name(dest.name + ".wal"))
    return dest
