"""Files mode: deliveries are read exactly as delivered, and refused with a clear message."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import logging
import os
import threading
import time
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from tap_helpers import run_tap, sale, write_csv

from tap_hdb_resale.deliveries import (
    COLUMNS,
    DeliveryError,
    read_delivery,
    scan_folder,
    wait_until_settled,
)
from tap_hdb_resale.resources import CURRENT
from tap_hdb_resale.tap import TapHdbResale
from tap_hdb_resale.window import collect_months


def files_config(folder: Path, start: str = "2023-01", end: str = "2023-12") -> dict:
    return {"data_dir": str(folder), "start_month": start, "end_month": end}


def test_records_are_the_rows_as_delivered(fixture_deliveries: Path) -> None:
    run = run_tap(files_config(fixture_deliveries, end="2023-02"))
    expected = []
    for path in sorted(fixture_deliveries.glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as handle:
            for line, row in enumerate(csv.DictReader(handle), start=2):
                where = {"_source": str(path.resolve()), "_source_row": line}
                expected.append({**row, **where, "_dataset_id": CURRENT.dataset_id})
    assert run.records == expected
    # Identical rows are real sales: both stay. Values stay text, exactly as written.
    assert run.records[1] == {**run.records[2], "_source_row": 3}
    assert {r["resale_price"] for r in run.records} >= {"505000", "255000.00"}
    assert run.month_counts() == {"2023-01": 4, "2023-02": 3}


def test_bom_crlf_reordered_and_extra_columns(tmp_path: Path) -> None:
    rows = [sale("2023-03", i) for i in range(3)]
    columns = ["remarks", *reversed(COLUMNS)]
    path = write_csv(
        tmp_path / "resale-flat-prices-2023-03.csv",
        [{**row, "remarks": "ignored"} for row in rows],
        columns=columns,
        bom=True,
        newline="\r\n",
    )
    run = run_tap(files_config(tmp_path))
    dataset_id = CURRENT.dataset_id
    assert run.records == [
        {**row, "_source": str(path.resolve()), "_source_row": line, "_dataset_id": dataset_id}
        for line, row in enumerate(rows, start=2)
    ]
    # The same rows in the plain export format have the same fingerprint: not a change.
    (tmp_path / "plain").mkdir()
    write_csv(tmp_path / "plain" / "resale-flat-prices-2023-03.csv", rows)
    odd = collect_months(tmp_path, ["2023-03"])["2023-03"]
    plain = collect_months(tmp_path / "plain", ["2023-03"])["2023-03"]
    assert odd.fingerprint == plain.fingerprint


def test_multi_month_file_keeps_only_the_window(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    months = ["2022-11", "2022-12", "2022-12", "2023-01", "2023-02", "2023-03"]
    write_csv(tmp_path / "all-sales.csv", [sale(m, i) for i, m in enumerate(months)])
    with caplog.at_level(logging.INFO):
        run = run_tap(files_config(tmp_path, "2023-01", "2023-02"))
    assert run.month_counts() == {"2023-01": 1, "2023-02": 1}
    assert [r["_source_row"] for r in run.records] == [5, 6]
    assert "all-sales.csv: skipped 4 rows of months outside the window" in caplog.text
    assert "2022-11: 1, 2022-12: 2, 2023-03: 1" in caplog.text


def test_file_named_for_a_month_outside_the_window_is_not_read(tmp_path: Path) -> None:
    write_csv(tmp_path / "resale-flat-prices-2023-01.csv", [sale("2023-01", 1)])
    (tmp_path / "resale-flat-prices-2019-05.csv").write_bytes(b"\xff not even text")
    run = run_tap(files_config(tmp_path))
    assert run.month_counts() == {"2023-01": 1}


def test_extra_columns_are_named_in_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [{**sale("2023-03", i), "remarks": "x"} for i in range(2)]
    write_csv(tmp_path / "resale-flat-prices-2023-03.csv", rows, columns=[*COLUMNS, "remarks"])
    with caplog.at_level(logging.WARNING):
        run = run_tap(files_config(tmp_path))
    assert run.month_counts() == {"2023-03": 2}
    assert "resale-flat-prices-2023-03.csv, line 1: column(s) 'remarks' are not among" in (
        caplog.text
    )
    # Said once, though the tap reads the file twice (checking it, then emitting its rows).
    assert caplog.text.count("'remarks' are not among") == 1


def test_files_outside_the_window_are_named_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_csv(tmp_path / "resale-flat-prices-2023-01.csv", [sale("2023-01", 1)])
    write_csv(tmp_path / "resale-flat-prices-2024-07.csv", [sale("2024-07", 1)])
    with caplog.at_level(logging.INFO):
        run_tap(files_config(tmp_path))
    assert (
        "Skipped 1 files named for months outside the window 2023-01..2023-12, unread: "
        "resale-flat-prices-2024-07.csv" in caplog.text
    )


def test_a_second_identical_copy_of_a_month_is_not_loaded_twice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [sale("2023-02", i) for i in range(3)]
    write_csv(tmp_path / "resale-flat-prices-2023-02.csv", rows)
    write_csv(tmp_path / "resale-flat-prices-2023-02 (1).csv", rows, bom=True, newline="\r\n")
    with caplog.at_level(logging.WARNING):
        run = run_tap(files_config(tmp_path))
    assert run.month_counts() == {"2023-02": 3}
    assert {r["_source"] for r in run.records} == {
        str((tmp_path / "resale-flat-prices-2023-02 (1).csv").resolve())
    }  # the first by name; the two files hold the same rows
    assert (
        "resale-flat-prices-2023-02.csv, line 2: delivers 2023-02 with exactly the rows of "
        "resale-flat-prices-2023-02 (1).csv (3 rows), so the month is loaded once" in caplog.text
    )


def test_one_month_in_two_files_is_refused(tmp_path: Path) -> None:
    write_csv(tmp_path / "a-export.csv", [sale("2023-01", 1), sale("2023-02", 2)])
    write_csv(tmp_path / "resale-flat-prices-2023-02.csv", [sale("2023-02", 3)])
    with pytest.raises(DeliveryError) as caught:
        run_tap(files_config(tmp_path))
    message = str(caught.value)
    assert "resale-flat-prices-2023-02.csv, line 2, column month" in message
    assert "a-export.csv also delivers" in message
    assert "rule: each month comes from exactly one file in a run" in message


HEADER = ",".join(COLUMNS)
GOOD = ",".join(sale("2023-03", 1).values())


def good_line(**changes: str) -> str:
    return ",".join(sale("2023-03", 1, **changes).values())


BAD_INPUTS = {
    "empty file": (
        b"",
        "line 1: the file is empty: there is no header row (rule: a delivery "
        "starts with a header row",
    ),
    "header only": (
        f"{HEADER}\n".encode(),
        "line 2: the file has a header but no data rows (rule: a delivery holds at least one row)",
    ),
    "missing columns": (
        f"{HEADER.replace(',resale_price', '').replace('town,', '')}\n{GOOD}\n".encode(),
        "line 1, column town, resale_price: missing from the header, which has: month, flat_type,",
    ),
    "truncated last line": (
        f"{HEADER}\n{GOOD}\n{GOOD}\n{GOOD[:40]}".encode(),
        "line 4, column storey_range: the row has 5 fields, the header 11: it ends early "
        "(rule: every row has as many fields as the header)",
    ),
    "cut inside the last value": (
        f"{HEADER}\n{GOOD}\n{GOOD[:-6]}".encode(),
        "line 3, column resale_price: '' is not a number",
    ),
    "too many fields": (
        f"{HEADER}\n{GOOD},extra\n".encode(),
        "line 2, column 12 (after the last header column): the row has 12 fields",
    ),
    "price not a number": (
        f"{HEADER}\n{GOOD}\n{good_line(resale_price='abc')}\n".encode(),
        "line 3, column resale_price: 'abc' is not a number (rule: resale_price must be "
        "numeric). Fix the file",
    ),
    "area not a number": (
        f"{HEADER}\n{good_line(floor_area_sqm='92 sqm')}\n".encode(),
        "line 2, column floor_area_sqm: '92 sqm' is not a number (rule: floor_area_sqm must "
        "be numeric)",
    ),
    "empty price": (
        f"{HEADER}\n{good_line(resale_price='')}\n".encode(),
        "line 2, column resale_price: '' is not a number",
    ),
    "month 13": (
        f"{HEADER}\n{good_line(month='2023-13')}\n".encode(),
        "line 2, column month: '2023-13' is not a month: expected YYYY-MM with MM from 01 to "
        "12 (rule: month must be YYYY-MM)",
    ),
    "two-digit year": (
        f"{HEADER}\n{good_line(month='23-01')}\n".encode(),
        "line 2, column month: '23-01' is not a month: expected YYYY-MM",
    ),
    "empty month": (
        f"{HEADER}\n{GOOD}\n{good_line(month='')}\n".encode(),
        "line 3, column month: '' is not a month: expected YYYY-MM",
    ),
    "not utf-8": (
        f"{HEADER}\n{GOOD}\n".encode() + good_line(town="CAF\xc9").encode("latin-1") + b"\n",
        "line 3: byte 0xc9 at byte offset",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_delivery_stops_the_run_with_file_line_column_and_rule(
    tmp_path: Path, case: str
) -> None:
    content, expected = BAD_INPUTS[case]
    (tmp_path / "sales-export.csv").write_bytes(content)
    with pytest.raises(DeliveryError) as caught:
        run_tap(files_config(tmp_path))
    message = str(caught.value)
    assert message.startswith("sales-export.csv, line ")
    assert expected in message
    assert "(rule: " in message


def test_not_utf8_names_the_offset_and_rule(tmp_path: Path) -> None:
    content = f"\ufeff{HEADER}\n".encode() + b"2023-03,BEDOK\xff\n"
    (tmp_path / "x.csv").write_bytes(content)
    with pytest.raises(DeliveryError) as caught:
        read_delivery(tmp_path / "x.csv")
    offset = content.index(b"\xff")
    assert f"x.csv, line 2: byte 0xff at byte offset {offset} is not valid UTF-8" in str(
        caught.value
    )
    assert "(rule: deliveries are UTF-8 text)" in str(caught.value)


def test_row_of_another_month_in_a_named_file(tmp_path: Path) -> None:
    rows = [sale("2023-05", 1), sale("2023-05", 2), sale("2023-06", 3)]
    write_csv(tmp_path / "resale-flat-prices-2023-05.csv", rows)
    with pytest.raises(DeliveryError) as caught:
        run_tap(files_config(tmp_path))
    assert str(caught.value).startswith(
        "resale-flat-prices-2023-05.csv, line 4, column month: a row of 2023-06 in a file "
        "named for 2023-05 (rule: rows match the month in the file name)"
    )


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_csv(tmp_path / "resale-flat-prices-2023-01.csv", [sale("2023-01", 1)])
    real_read_bytes = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self == path:  # chmod would not stop root, so refuse the read here
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(DeliveryError) as caught:
        run_tap(files_config(tmp_path))
    assert str(caught.value).startswith(
        "resale-flat-prices-2023-01.csv: cannot be read: Permission denied "
        "(rule: delivery files must be readable)"
    )


def test_nothing_is_emitted_when_a_later_file_is_bad(tmp_path: Path) -> None:
    """Every file is checked before the first record goes out, so the loader never sees a
    partial run (it would not commit one anyway: the run fails)."""
    write_csv(tmp_path / "resale-flat-prices-2023-01.csv", [sale("2023-01", 1)])
    write_csv(tmp_path / "resale-flat-prices-2023-02.csv", [sale("2023-02", 1, town="")][:0])
    out = io.StringIO()
    tap = TapHdbResale(config=files_config(tmp_path))
    with redirect_stdout(out), pytest.raises(DeliveryError, match="no data rows"):
        tap.sync_all()
    assert '"type":"RECORD"' not in out.getvalue().replace(" ", "")


def test_data_dir_must_be_a_folder(tmp_path: Path) -> None:
    with pytest.raises(DeliveryError, match="is not a folder"):
        run_tap(files_config(tmp_path / "missing"))


def settled(path: Path) -> Path:
    """As a delivery that finished arriving a while ago."""
    old = time.time() - 3600
    os.utime(path, (old, old))
    return path


def test_a_complete_file_as_data_gov_sg_serves_it_loads(tmp_path: Path) -> None:
    # A byte order mark, CRLF line ends and no line break after the last row.
    text = "\r\n".join([HEADER, GOOD, good_line(block="9")])
    path = tmp_path / "resale-flat-prices-2023-03.csv"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    settled(path)
    run = run_tap(files_config(tmp_path))
    assert [r["block"] for r in run.records] == ["101", "9"]
    assert run.records[-1]["resale_price"] == "401000"


def test_upper_case_and_gzip_deliveries_are_read(tmp_path: Path) -> None:
    write_csv(tmp_path / "Resale Flat Prices 2023-03.CSV", [sale("2023-03", 1)])
    text = f"{HEADER}\n{','.join(sale('2023-04', 2).values())}\n"
    (tmp_path / "resale-flat-prices-2023-04.csv.gz").write_bytes(gzip.compress(text.encode()))
    run = run_tap(files_config(tmp_path))
    assert sorted(r["month"] for r in run.records) == ["2023-03", "2023-04"]
    assert any(r["_source"].endswith(".csv.gz") for r in run.records)


def test_every_other_entry_of_the_folder_is_named(tmp_path: Path, caplog) -> None:
    write_csv(tmp_path / "resale-flat-prices-2023-03.csv", [sale("2023-03", 1)])
    (tmp_path / "older").mkdir()
    (tmp_path / "notes.xlsx").write_bytes(b"PK")
    (tmp_path / "latest").symlink_to(tmp_path / "nowhere")
    (tmp_path / "manifest.json").write_text("{}")  # make data's: a companion, not named
    scan = scan_folder(tmp_path)
    assert [p.name for p in scan.deliveries] == ["resale-flat-prices-2023-03.csv"]
    assert scan.ignored == [
        "latest is a link to a file that does not exist",
        "notes.xlsx is not a CSV delivery (*.csv or *.csv.gz)",
        "older is a folder: deliveries in subfolders are not read",
    ]
    with caplog.at_level(logging.WARNING):
        run = run_tap(files_config(tmp_path, "2023-03", "2023-04"))
    assert len(run.records) == 1
    text = caplog.text
    assert "older is a folder: deliveries in subfolders are not read" in text
    assert "No delivery for 2023-04 in " in text
    assert "(rule: every month of the window has a delivery)" in text


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("resale-flat-prices-2023-05.xlsx", "is not a CSV delivery (*.csv or *.csv.gz), though"),
        ("resale-flat-prices-2023-05.csv", "is a link to a file that does not exist"),
    ],
)
def test_a_delivery_that_cannot_be_read_is_refused_by_name(
    tmp_path: Path, name: str, problem: str
) -> None:
    write_csv(tmp_path / "resale-flat-prices-2023-03.csv", [sale("2023-03", 1)])
    if name.endswith(".xlsx"):
        (tmp_path / name).write_bytes(b"PK")
    else:
        (tmp_path / name).symlink_to(tmp_path / "nowhere.csv")
    with pytest.raises(DeliveryError) as caught:
        run_tap(files_config(tmp_path))
    assert str(caught.value).startswith(f"{name}: {problem}")
    assert "(rule: every delivery in the folder can be read)" in str(caught.value)


def test_a_corrupt_gzip_delivery_is_refused(tmp_path: Path) -> None:
    data = gzip.compress(f"{HEADER}\n{GOOD}\n".encode())
    (tmp_path / "resale-flat-prices-2023-03.csv.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DeliveryError, match="is not a complete gzip file"):
        run_tap(files_config(tmp_path))


def write_manifest(folder: Path, path: Path, rows: int) -> None:
    entry = {
        "file": path.name,
        "rows": rows,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    (folder / "manifest.json").write_text(json.dumps({"months": {"2023-03": entry}}))


def test_a_file_cut_short_is_caught_by_the_manifest(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "resale-flat-prices-2023-03.csv", [sale("2023-03", i) for i in range(3)]
    )
    write_manifest(tmp_path, path, 3)
    run_tap(files_config(tmp_path))  # as downloaded: loads
    # Cut inside the last price: "402000" becomes "40", a plausible number and no line break.
    path.write_bytes(path.read_bytes().rstrip(b"\n")[:-4])
    with pytest.raises(DeliveryError) as caught:
        run_tap(files_config(tmp_path))
    assert str(caught.value).startswith(
        "resale-flat-prices-2023-03.csv: holds 3 rows and ends inside a line, but manifest.json "
        "records 3 complete rows for it: the file was cut short, or is still being copied "
        "(rule: a delivery holds the rows its manifest records)"
    )


def test_fewer_rows_than_the_manifest_records_is_refused(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "resale-flat-prices-2023-03.csv", [sale("2023-03", i) for i in range(3)]
    )
    write_manifest(tmp_path, path, 3)
    path.write_text("\n".join(path.read_text().splitlines()[:3]) + "\n")  # two rows left
    with pytest.raises(DeliveryError) as caught:
        run_tap(files_config(tmp_path))
    assert str(caught.value).startswith(
        "resale-flat-prices-2023-03.csv: holds 2 rows, but manifest.json records 3 complete rows "
        "for it: the file was cut short, or is still being copied"
    )


def test_a_file_still_being_written_is_waited_for(tmp_path: Path) -> None:
    path = tmp_path / "resale-flat-prices-2023-03.csv"
    path.write_text(f"{HEADER}\n{GOOD}\n")

    def finish_copy() -> None:
        time.sleep(0.5)
        with path.open("a") as handle:
            handle.write(good_line(block="7") + "\n")

    writer = threading.Thread(target=finish_copy)
    writer.start()
    wait_until_settled(path, quiet_seconds=1.0)
    writer.join()
    assert len(read_delivery(path)) == 2  # read only once the copy had finished


def test_a_file_that_keeps_changing_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "resale-flat-prices-2023-03.csv"
    path.write_text(f"{HEADER}\n{GOOD}\n")
    ticks = iter(range(10_000))

    def grow(_: float) -> None:
        with path.open("a") as handle:
            handle.write(good_line(block=str(next(ticks))) + "\n")
        time.sleep(0.05)

    with pytest.raises(DeliveryError, match="is still being written: it kept changing for 2 s"):
        wait_until_settled(path, quiet_seconds=1.0, timeout=2.0, sleep=grow)


def test_a_new_month_far_smaller_than_its_neighbours_is_named(tmp_path: Path, caplog) -> None:
    for month, count in (("2023-01", 20), ("2023-02", 22), ("2023-03", 3)):
        write_csv(
            tmp_path / f"resale-flat-prices-{month}.csv", [sale(month, i) for i in range(count)]
        )
    with caplog.at_level(logging.WARNING):
        run = run_tap(files_config(tmp_path, "2023-01", "2023-03"))
    assert len(run.records) == 45  # warned, not refused: a month may really be small
    assert (
        "2023-03 delivers 3 rows, under half the 21 of a typical month: a month still filling "
        "up, or a file cut short?"
    ) in caplog.text
    assert "2023-01 delivers" not in caplog.text


def test_a_re_delivery_far_smaller_than_the_last_is_named(tmp_path: Path, caplog) -> None:
    path = write_csv(
        tmp_path / "resale-flat-prices-2023-01.csv", [sale("2023-01", i) for i in range(10)]
    )
    first = run_tap(files_config(tmp_path, "2023-01", "2023-01"))
    write_csv(path, [sale("2023-01", i) for i in range(7)])
    with caplog.at_level(logging.WARNING):
        run_tap(files_config(tmp_path, "2023-01", "2023-01"), state=first.states[-1])
    assert "2023-01 delivers 7 rows, 70% of the 10 rows of its previous delivery" in caplog.text
