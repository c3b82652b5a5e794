"""Files as users really get them, through the real pipeline (Meltano, the gate, dbt).

A complete download as data.gov.sg serves it (a byte order mark, CRLF, no line break after
the last row) loads; names in upper case and compressed files load; a file still being copied
into the folder is loaded only once complete; everything else in the folder is named; a month
with no delivery says so by name; a month re-delivered much smaller warns with the counts;
and a warehouse path that is not a DuckDB file is refused before anything runs.
"""

from __future__ import annotations

import gzip
import threading
import time
from pathlib import Path

import pytest

from faults.support import (
    LOAD_COLUMNS,
    Pipeline,
    delivery_name,
    latest_counts,
    mart_checksums,
    raw_snapshot,
)
from hdb_elt.extract_load import run_extract_load
from hdb_elt.settings import load_settings
from hdb_elt.warehouse import NotAWarehouseError

pytestmark = pytest.mark.slow

MARCH = delivery_name("2023-03")


def as_served(text: str) -> bytes:
    """A CSV as data.gov.sg serves it: BOM, CRLF, no line break after the last row."""
    return b"\xef\xbb\xbf" + text.rstrip("\n").replace("\n", "\r\n").encode()


def test_a_complete_download_without_a_final_line_break_loads(
    pipeline: Pipeline, reference, shared_monthly: Path
) -> None:
    (pipeline.deliveries / MARCH).write_bytes(as_served((shared_monthly / MARCH).read_text()))
    outcome = pipeline.run()
    assert outcome.stage is None, outcome.message
    assert outcome.extract.month_rows == {"2023-03": 2277}
    assert latest_counts(pipeline.warehouse) == reference.counts
    ignore = (*LOAD_COLUMNS, "_source")
    assert mart_checksums(pipeline.warehouse, ignore=ignore) == mart_checksums(
        reference.pipeline.warehouse, ignore=ignore
    )


@pytest.mark.parametrize("name", ["Resale Flat Prices 2023-03.CSV", f"{MARCH}.gz"])
def test_upper_case_and_compressed_deliveries_load(
    pipeline: Pipeline, reference, shared_monthly: Path, name: str
) -> None:
    data = (shared_monthly / MARCH).read_bytes()
    (pipeline.deliveries / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    outcome = pipeline.run(build=False)
    assert outcome.stage is None, outcome.message
    assert outcome.extract.month_rows == {"2023-03": 2277}
    assert latest_counts(pipeline.warehouse) == reference.counts


def test_every_other_entry_is_named_and_a_missing_month_says_so(
    pipeline: Pipeline, shared_monthly: Path
) -> None:
    (pipeline.deliveries / "older").mkdir()
    (pipeline.deliveries / "older" / MARCH).write_bytes((shared_monthly / MARCH).read_bytes())
    (pipeline.deliveries / "prices.xlsx").write_bytes(b"PK\x03\x04")
    (pipeline.deliveries / "latest").symlink_to(pipeline.deliveries / "nowhere")
    raw_before = raw_snapshot(pipeline.warehouse)
    outcome = pipeline.run(build=False)
    words = outcome.message
    assert "older is a folder: deliveries in subfolders are not read" in words
    assert "prices.xlsx is not a CSV delivery (*.csv or *.csv.gz)" in words
    assert "latest is a link to a file that does not exist" in words
    assert f"No delivery for 2023-03 in {pipeline.deliveries}" in words
    assert "Extract-load: nothing new loaded." in words
    assert "up to date" not in words
    assert raw_snapshot(pipeline.warehouse) == raw_before


def test_a_delivery_named_so_that_cannot_be_read_is_refused(pipeline: Pipeline) -> None:
    (pipeline.deliveries / "resale-flat-prices-2023-03.xlsx").write_bytes(b"PK\x03\x04")
    raw_before = raw_snapshot(pipeline.warehouse)
    outcome = pipeline.run(build=False)
    assert outcome.stage == "extract-load"
    assert (
        "resale-flat-prices-2023-03.xlsx: is not a CSV delivery (*.csv or *.csv.gz), though its "
        "name says it is one"
    ) in outcome.message
    assert raw_snapshot(pipeline.warehouse) == raw_before


def test_a_file_still_being_copied_in_is_loaded_only_once_complete(
    pipeline: Pipeline, shared_monthly: Path
) -> None:
    lines = (shared_monthly / MARCH).read_text().splitlines(keepends=True)
    target = pipeline.deliveries / MARCH
    target.write_text("".join(lines[:500]))  # a copy under way, ending at a line break
    chunks = [lines[i : i + 250] for i in range(500, len(lines), 250)]

    def keep_copying() -> None:
        for chunk in chunks:  # the rest arrives over the next few seconds
            time.sleep(0.4)
            with target.open("a") as handle:
                handle.write("".join(chunk))

    copier = threading.Thread(target=keep_copying)
    copier.start()
    try:
        outcome = pipeline.run(build=False)
    finally:
        copier.join()
    assert outcome.stage is None, outcome.message
    assert outcome.extract.month_rows == {"2023-03": 2277}  # the whole month, not 499 rows


def test_a_month_re_delivered_much_smaller_warns_with_the_counts(
    pipeline: Pipeline, shared_monthly: Path
) -> None:
    lines = (shared_monthly / delivery_name("2023-02")).read_text().splitlines(keepends=True)
    (pipeline.deliveries / delivery_name("2023-02")).write_text("".join(lines[:901]))
    outcome = pipeline.run(build=False)
    assert outcome.extract.month_rows == {"2023-02": 900}
    assert (
        "2023-02 delivers 900 rows, 49% of the 1,837 rows of its previous delivery: a month "
        "still filling up, or a file cut short?"
    ) in outcome.message


def test_a_warehouse_path_that_is_not_duckdb_is_refused_and_left_alone(
    pipeline: Pipeline, shared_monthly: Path
) -> None:
    not_a_warehouse = pipeline.deliveries / delivery_name("2023-01")
    before = not_a_warehouse.read_bytes()
    settings = load_settings(
        {**pipeline.environment(), "HDB_WAREHOUSE_PATH": str(not_a_warehouse)}, dotenv=False
    )
    with pytest.raises(NotAWarehouseError) as refused:
        run_extract_load(settings)
    message = str(refused.value)
    assert "resale-flat-prices-2023-01.csv is not a DuckDB database (it is a text file" in message
    assert "Point HDB_WAREHOUSE_PATH at a DuckDB file" in message
    assert not_a_warehouse.read_bytes() == before
