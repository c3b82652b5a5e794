"""Tests of the warehouse's own definitions (hdb_elt.warehouse): the view of the latest
accepted deliveries, that warehouses made before it get it, and reading it into pandas."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from tap_hdb_resale.resources import CURRENT, RESOURCES

from hdb_elt.validation import read_deliveries
from hdb_elt.warehouse import (
    _DDL,
    LATEST_DELIVERIES,
    RAW_TABLE,
    REJECTED_DELIVERIES,
    SOURCE_COLUMNS,
    connect,
    delivery_record,
    ensure_warehouse,
    has_latest_deliveries,
    query_df,
    rejected_deliveries,
)


def add_load(path: Path, load_id: str, loaded_at: str, months: dict[str, int]) -> None:
    """A committed load of ``months`` ({month: rows}), every value a placeholder."""
    with connect(path) as con:
        for month, rows in months.items():
            for line in range(2, rows + 2):
                values = [month if c == "month" else f"{c}-{line}" for c in SOURCE_COLUMNS]
                con.execute(
                    f"insert into {RAW_TABLE} ({', '.join(SOURCE_COLUMNS)}, _source, "
                    f"_source_row, _load_id, _loaded_at) values ({', '.join('?' * 15)})",
                    [*values, f"/in/{month}.csv", line, load_id, datetime.fromisoformat(loaded_at)],
                )


def reject(path: Path, load_id: str, month: str) -> None:
    with connect(path) as con:
        con.execute(
            f"insert into {REJECTED_DELIVERIES} values (?, ?, 'types_parse', 'a test', now())",
            [load_id, month],
        )


def latest(path: Path) -> dict[str, tuple[str, int]]:
    with connect(path, read_only=True) as con:
        rows = con.execute(
            f"select month, any_value(_load_id), count(*), count(distinct _load_id) "
            f"from {LATEST_DELIVERIES} group by month order by month"
        ).fetchall()
    assert all(loads == 1 for *_, loads in rows)  # one delivery per month
    return {month: (load_id, count) for month, load_id, count, _ in rows}


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "w.duckdb"
    ensure_warehouse(path)
    return path


def test_the_view_is_each_months_latest_delivery_that_was_not_rejected(warehouse):
    add_load(warehouse, "a", "2024-01-01", {"2023-01": 3, "2023-02": 2})
    add_load(warehouse, "b", "2024-02-01", {"2023-02": 4, "2023-03": 1})
    assert latest(warehouse) == {"2023-01": ("a", 3), "2023-02": ("b", 4), "2023-03": ("b", 1)}

    add_load(warehouse, "c", "2024-03-01", {"2023-02": 5, "2023-03": 6})
    reject(warehouse, "c", "2023-02")  # c's February rejected, its March not
    assert latest(warehouse) == {"2023-01": ("a", 3), "2023-02": ("b", 4), "2023-03": ("c", 6)}
    reject(warehouse, "b", "2023-02")  # back to the first delivery
    assert latest(warehouse)["2023-02"] == ("a", 2)
    reject(warehouse, "a", "2023-01")  # nothing accepted left: the month is absent
    assert "2023-01" not in latest(warehouse)

    with connect(warehouse, read_only=True) as con:
        view = [d[0] for d in con.execute(f"select * from {LATEST_DELIVERIES} limit 0").description]
        raw = [d[0] for d in con.execute(f"select * from {RAW_TABLE} limit 0").description]
        assert view == raw
        assert [r[:2] for r in rejected_deliveries(con, "2023-02")] == [
            ("c", "2023-02"),
            ("b", "2023-02"),
        ]


def test_a_warehouse_made_before_the_view_gets_it_when_a_stage_reads_it(tmp_path):
    old = tmp_path / "old.duckdb"
    with connect(old) as con:  # the DDL as it was: no rejected deliveries, no view
        for statement in _DDL:
            if REJECTED_DELIVERIES not in statement and LATEST_DELIVERIES not in statement:
                con.execute(statement)
    add_load(old, "a", "2024-01-01", {"2023-05": 3})
    assert not has_latest_deliveries(old)

    rows = read_deliveries(old, "2023-05", "2023-05")

    assert len(rows) == 3
    assert has_latest_deliveries(old)
    with connect(old, read_only=True) as con:
        assert rejected_deliveries(con) == []


def test_query_df_reads_raw_rows_through_arrow_as_duckdb_hands_them_to_pandas(warehouse):
    add_load(warehouse, "load-a", "2024-01-01 00:00:00", {"2023-04": 3, "2023-05": 2})
    with connect(warehouse) as con:  # as the loader writes them, every row has its resource
        con.execute(f"update {RAW_TABLE} set _dataset_id = ?", [CURRENT.dataset_id])
    sql = f"select * from {RAW_TABLE} where month >= ? order by month, _source_row"

    through_arrow = query_df(warehouse, sql, ["2023-01"], arrow=True)

    assert len(through_arrow) == 5
    pd.testing.assert_frame_equal(through_arrow, query_df(warehouse, sql, ["2023-01"]))
    # other types are why .df() stays the default: a decimal is a Python object through Arrow
    decimal = "select 1.5::decimal(9, 2) as price"
    assert query_df(warehouse, decimal)["price"].dtype == "float64"
    assert query_df(warehouse, decimal, arrow=True)["price"].dtype == "object"


def test_a_warehouse_made_before_dataset_ids_gets_them_from_each_rows_month(tmp_path):
    """raw.resale_flat_prices as it was before ``_dataset_id``: the column is added and its
    rows filled from their month (they were all read from the newest resource then); the
    view passes it through, and the record the tap plans from is unchanged."""
    old = tmp_path / "old.duckdb"
    columns = ", ".join(f"{c} varchar" for c in SOURCE_COLUMNS)
    with connect(old) as con:  # the DDL as it was: the raw table without _dataset_id
        con.execute("create schema raw")
        con.execute(
            f"create table {RAW_TABLE} ({columns}, _source varchar, _source_row bigint, "
            "_load_id varchar, _loaded_at timestamp)"
        )
    add_load(old, "a", "2024-01-01", {"2023-05": 3, "2023-06": 2})
    with connect(old) as con:  # and, for the rule, months of older resources
        con.execute(f"update {RAW_TABLE} set month = '2016-02' where month = '2023-06'")
    before = delivery_record(old)  # runs the migration too

    with connect(old, read_only=True) as con:
        found = con.execute(
            f"select month, _dataset_id, count(*) from {RAW_TABLE} group by all order by 1"
        ).fetchall()
        latest = con.execute(f"select distinct _dataset_id from {LATEST_DELIVERIES} order by 1")
        assert latest.fetchall() == sorted([(RESOURCES[3].dataset_id,), (CURRENT.dataset_id,)])
        names = [row[0] for row in con.execute(f"describe {RAW_TABLE}").fetchall()]
    assert found == [("2016-02", RESOURCES[3].dataset_id, 2), ("2023-05", CURRENT.dataset_id, 3)]
    assert names[-1] == "_dataset_id"
    ensure_warehouse(old)  # again: nothing changes
    assert delivery_record(old) == before and set(before) == {"2016-02", "2023-05"}


# What DuckDB 1.4.4 says opening a file DuckDB 2.0.0 wrote (seen with a real one).
NEWER_FILE_ERROR = (
    "IO Error: Trying to read a database file with version number 999, but we can only read "
    "versions between 64 and 67.\nThe database file was created with an newer version of "
    "DuckDB.\n\nNewer DuckDB version might introduce backward incompatible changes (possibly "
    "guarded by compatibility settings)."
)


def test_a_file_written_by_a_newer_duckdb_is_named_with_the_fix(tmp_path, monkeypatch):
    import duckdb

    import hdb_elt.warehouse as warehouse

    path = tmp_path / "newer.duckdb"
    duckdb.connect(str(path)).close()

    def newer(*args, **kwargs):
        raise duckdb.IOException(NEWER_FILE_ERROR)

    monkeypatch.setattr(warehouse.duckdb, "connect", newer)
    with (
        pytest.raises(warehouse.WarehouseUnavailableError) as caught,
        warehouse.connect(path, read_only=True),
    ):
        pass
    message = str(caught.value)
    assert "written by a newer DuckDB than this one (1.4.4" in message
    assert "point HDB_WAREHOUSE_PATH at a new path" in message and "EXPORT DATABASE" in message
