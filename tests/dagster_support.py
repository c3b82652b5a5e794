"""Helpers the Dagster tests share: an isolated environment, warehouse fingerprints."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import nbformat
import pytest

from dagster_orchestration.home import prepare_home

# Differ from one load to the next by design (ids, times); everything else must be equal.
LOAD_COLUMNS = ("_load_id", "_loaded_at")


@contextmanager
def dagster_environment(root: Path, data_dir: Path) -> Iterator[dict[str, str]]:
    """Point the settings, the Dagster instance, the recorded notebooks and dbt's artifacts
    at folders under ``root`` (dbt's own folder too: another checkout's dbt may be writing
    the shared ``dbt_resale_flat/target``); yields the variables set."""
    values = {
        "HDB_RESALE_DATA_DIR": str(data_dir),
        "HDB_WAREHOUSE_PATH": str(root / "warehouse" / "hdb_resale.duckdb"),
        "HDB_LOOKBACK_MONTHS": "1",
        "HDB_DAGSTER_RUNS_DIR": str(root / "runs"),
        "DBT_TARGET_PATH": str(root / "dbt-target"),
        "TQDM_DISABLE": "1",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in values.items():
            patch.setenv(name, value)
        patch.delenv("DAGSTER_HOME", raising=False)
        values["DAGSTER_HOME"] = str(prepare_home(root / "dagster_home"))
        yield values


def copy_months(source: Path, dest: Path, months: list[str]) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for month in months:
        shutil.copy(source / f"resale-flat-prices-{month}.csv", dest)
    return dest


def file_counts(folder: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in folder.glob("*.csv"):
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for row in csv.DictReader(handle):
                counts[row["month"]] = counts.get(row["month"], 0) + 1
    return counts


def fact_counts(warehouse: Path) -> dict[str, int]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return dict(
            con.execute(
                "select month_key, count(*) from marts.fct_resale_transactions "
                "group by 1 order by 1"
            ).fetchall()
        )


def mart_checksums(warehouse: Path, ignore: tuple[str, ...] = LOAD_COLUMNS) -> dict[str, str]:
    """An ordered checksum of every mart, leaving out the columns ``ignore`` (by default the
    load's own id and time)."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = [
            row[0]
            for row in con.execute(
                "select table_name from information_schema.tables where table_schema = 'marts' "
                "order by 1"
            ).fetchall()
        ]
        sums = {}
        for table in tables:
            columns = [
                row[0]
                for row in con.execute(
                    "select column_name from information_schema.columns where table_schema = "
                    "'marts' and table_name = ? order by ordinal_position",
                    [table],
                ).fetchall()
                if row[0] not in ignore
            ]
            row = f"concat_ws('|', {', '.join(f'{c}::varchar' for c in columns)})"
            sums[table] = con.execute(
                f"select count(*) || ':' || md5(string_agg({row}, '\n' order by {row})) "
                f"from marts.{table}"
            ).fetchone()[0]
        return sums


def notebook_text(path: Path) -> str:
    """Every cell's source and text outputs of a notebook."""
    notebook = nbformat.read(path, as_version=4)
    parts = []
    for cell in notebook.cells:
        parts.append(cell.source)
        for output in cell.get("outputs", []):
            parts.append(str(output.get("text", "")))
            parts.append(str(output.get("data", {}).get("text/plain", "")))
            parts.append(f"{output.get('ename', '')}: {output.get('evalue', '')}")
    return "\n".join(parts)
