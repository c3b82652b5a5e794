"""Extract-load end to end: real Meltano, our tap and loader, a real DuckDB file."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import duckdb
import pytest
from tap_hdb_resale.resources import RESOURCES, WITHOUT_REMAINING_LEASE

from hdb_elt.extract_load import (
    ExtractLoadError,
    latest_delivery_counts,
    read_state,
    run_extract_load,
)
from hdb_elt.settings import load_settings
from hdb_elt.warehouse import SOURCE_COLUMNS

pytestmark = pytest.mark.slow

HEADER = list(SOURCE_COLUMNS)
HISTORY = Path(__file__).resolve().parents[1] / "data" / "history_sample"


def settings_for(data_dir: Path, warehouse: Path, start: str, end: str, lookback: int = 1):
    return load_settings(
        {
            "HDB_RESALE_DATA_DIR": str(data_dir),
            "HDB_WAREHOUSE_PATH": str(warehouse),
            "HDB_START_MONTH": start,
            "HDB_END_MONTH": end,
            "HDB_LOOKBACK_MONTHS": str(lookback),
        },
        dotenv=False,
    )


def sale(month: str, i: int, price: str | None = None) -> list[str]:
    """One plausible row; ``i`` varies the block and price so rows differ."""
    return [
        month, "ANG MO KIO", "4 ROOM", f"{100 + i}", "ANG MO KIO AVE 3", "07 TO 09",
        "92", "New Generation", "1978", "54 years 01 month", price or str(400000 + i * 1000),
    ]  # fmt: skip


def write_delivery(folder: Path, month: str, rows: list[list[str]]) -> Path:
    path = folder / f"resale-flat-prices-{month}.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def raw_rows(warehouse: Path) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(
            "select * exclude (_load_id, _loaded_at) from raw.resale_flat_prices "
            "order by _loaded_at, _source, _source_row"
        ).fetchall()


def file_row_counts(folder: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in sorted(folder.glob("*.csv")):
        for month, rows in file_row_counts_of(path).items():
            counts[month] = counts.get(month, 0) + rows
    return counts


def file_row_counts_of(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for row in csv.DictReader(handle):
            counts[row["month"]] = counts.get(row["month"], 0) + 1
    return counts


def months_of(state: dict | None) -> set[str]:
    if not state:
        return set()
    bookmarks = state["singer_state"]["bookmarks"]["resale_flat_prices"]
    return set(bookmarks.get("months", {}))


def test_twelve_shared_months_load_every_row(shared_monthly: Path, tmp_path: Path) -> None:
    settings = settings_for(shared_monthly, tmp_path / "w.duckdb", "2023-01", "2023-12")
    expected = file_row_counts(shared_monthly)
    assert sum(expected.values()) == 25_777

    first = run_extract_load(settings)
    assert first.rows == 25_777
    assert first.month_rows == expected
    assert latest_delivery_counts(settings.warehouse_path) == expected
    assert months_of(read_state(settings)) == set(expected)

    # Again: the files are unchanged, so nothing is extracted (files mode has no lookback).
    second = run_extract_load(settings)
    assert second.load_id is None
    assert latest_delivery_counts(settings.warehouse_path) == expected


def test_the_five_resources_load_every_row_with_their_dataset_id(tmp_path: Path) -> None:
    """The fixtures of the five formats, as published (multi-month files), through real
    Meltano: every row lands once, with its resource's dataset id and, where the resource has
    none, a null remaining lease; a file of the wrong format for its months loads nothing."""
    deliveries = tmp_path / "in"
    shutil.copytree(HISTORY, deliveries, ignore=shutil.ignore_patterns("*.py"))
    settings = settings_for(deliveries, tmp_path / "w.duckdb", "1990-01", "2022-12")
    expected = {r.dataset_id: sum(file_row_counts_of(deliveries / r.file_name).values())
                for r in RESOURCES}  # fmt: skip
    assert run_extract_load(settings).rows == sum(expected.values()) == 792
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        found = con.execute(
            "select _dataset_id, count(*), count(remaining_lease) from raw.latest_deliveries "
            "group by all"
        ).fetchall()
    assert {d: (n, lease) for d, n, lease in found} == {
        r.dataset_id: (expected[r.dataset_id], expected[r.dataset_id] * r.has_remaining_lease)
        for r in RESOURCES
    }
    assert run_extract_load(settings).load_id is None  # unchanged files: nothing again

    # A monthly file of 2023 in the ten columns of the old resources is not 2023's export.
    wrong = deliveries / "resale-flat-prices-2023-01.csv"
    with wrong.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([WITHOUT_REMAINING_LEASE, [*sale("2023-01", 1)[:9], "1"]])
    later = settings_for(deliveries, settings.warehouse_path, "2023-01", "2023-01")
    with pytest.raises(ExtractLoadError, match=r"resale-flat-prices-2023-01.csv, line 2, column "
                       r"remaining_lease: a row of 2023-01, but the file lacks"):  # fmt: skip
        run_extract_load(later)
    assert latest_delivery_counts(settings.warehouse_path) == file_row_counts(HISTORY)


def test_a_new_warehouse_file_loads_the_whole_window_again(tmp_path: Path) -> None:
    deliveries = tmp_path / "in"
    deliveries.mkdir()
    for month in ("2023-01", "2023-02", "2023-03"):
        write_delivery(deliveries, month, [sale(month, i) for i in range(3)])
    first = settings_for(deliveries, tmp_path / "a.duckdb", "2023-01", "2023-03", lookback=0)
    assert run_extract_load(first).rows == 9
    assert run_extract_load(first).load_id is None  # nothing new, nothing changed
    other = settings_for(deliveries, tmp_path / "b.duckdb", "2023-01", "2023-03", lookback=0)
    assert run_extract_load(other).rows == 9


def test_a_changed_delivery_replaces_its_month_downstream(tmp_path: Path) -> None:
    deliveries = tmp_path / "in"
    deliveries.mkdir()
    write_delivery(deliveries, "2023-01", [sale("2023-01", i) for i in range(4)])
    write_delivery(deliveries, "2023-02", [sale("2023-02", i) for i in range(5)])
    settings = settings_for(deliveries, tmp_path / "w.duckdb", "2023-01", "2023-02", lookback=0)
    run_extract_load(settings)

    # The January delivery is revised: one sale gone, two added, one identical twin.
    revised = [sale("2023-01", i) for i in (0, 1, 3, 7, 8)] + [sale("2023-01", 8)]
    write_delivery(deliveries, "2023-01", revised)
    result = run_extract_load(settings)
    assert result.month_rows == {"2023-01": 6}
    assert latest_delivery_counts(settings.warehouse_path) == {"2023-01": 6, "2023-02": 5}
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        latest = con.execute(
            "select block, resale_price from raw.resale_flat_prices where month = '2023-01' "
            "qualify _loaded_at = max(_loaded_at) over () order by _source_row"
        ).fetchall()
        total = con.execute("select count(*) from raw.resale_flat_prices").fetchone()[0]
    assert latest == [(row[3], row[10]) for row in revised]
    assert total == 4 + 5 + 6  # raw is append-only: the first delivery is still there


BAD_DELIVERIES = {
    "missing column": (
        lambda p: p.write_text("month,town\n2023-03,ANG MO KIO\n"),
        ["resale-flat-prices-2023-03.csv", "missing"],
    ),
    "non-numeric price": (
        lambda p: write_delivery(
            p.parent, "2023-03", [sale("2023-03", 0), sale("2023-03", 1, "abc")]
        ),
        ["resale-flat-prices-2023-03.csv", "line 3", "resale_price"],
    ),
    "malformed month": (
        lambda p: write_delivery(
            p.parent, "2023-03", [sale("2023-03", 0), ["2023-13", *sale("", 1)[1:]]]
        ),
        ["resale-flat-prices-2023-03.csv", "line 3", "month"],
    ),
    "not UTF-8": (
        lambda p: p.write_bytes(",".join(HEADER).encode() + b"\n2023-03,TOA PAYOH\xff\n"),
        ["resale-flat-prices-2023-03.csv", "UTF-8"],
    ),
    "truncated last line": (
        lambda p: p.write_text(",".join(HEADER) + "\n" + ",".join(sale("2023-03", 0)[:6]) + "\n"),
        ["resale-flat-prices-2023-03.csv", "line 2"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_DELIVERIES))
def test_a_bad_delivery_is_named_and_changes_nothing(tmp_path: Path, case: str) -> None:
    deliveries = tmp_path / "in"
    deliveries.mkdir()
    for month in ("2023-01", "2023-02"):
        write_delivery(deliveries, month, [sale(month, i) for i in range(3)])
    settings = settings_for(deliveries, tmp_path / "w.duckdb", "2023-01", "2023-03")
    run_extract_load(settings)
    rows_before, state_before = raw_rows(settings.warehouse_path), read_state(settings)

    make_bad, expected_words = BAD_DELIVERIES[case]
    make_bad(deliveries / "resale-flat-prices-2023-03.csv")
    with pytest.raises(ExtractLoadError) as error:
        run_extract_load(settings)
    for word in expected_words:
        assert word in str(error.value)
    assert raw_rows(settings.warehouse_path) == rows_before
    assert read_state(settings) == state_before

    # Once the delivery is fixed, it goes through.
    write_delivery(deliveries, "2023-03", [sale("2023-03", i) for i in range(2)])
    assert run_extract_load(settings).month_rows["2023-03"] == 2


def test_bom_crlf_and_reordered_columns_load_as_delivered(tmp_path: Path) -> None:
    deliveries = tmp_path / "in"
    deliveries.mkdir()
    order = list(reversed(HEADER))
    rows = [sale("2023-05", i) for i in range(3)]
    lines = [",".join(order)] + [",".join(reversed(row)) for row in rows]
    (deliveries / "resale-flat-prices-2023-05.csv").write_bytes(
        b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n"
    )
    settings = settings_for(deliveries, tmp_path / "w.duckdb", "2023-05", "2023-05")
    run_extract_load(settings)
    loaded = [row[: len(HEADER)] for row in raw_rows(settings.warehouse_path)]
    assert loaded == [tuple(row) for row in rows]
    shutil.rmtree(deliveries)
