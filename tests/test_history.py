"""The five resources as notebook 01 shows them (hdb_elt.history), from the sample files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from tap_hdb_resale.resources import RESOURCES

from hdb_elt.history import ABSENT, QUIRKS, SAMPLE_DIR, resources_table, sample_rows


def test_every_resource_has_its_quirks_and_no_other() -> None:
    assert list(QUIRKS) == [r.dataset_id for r in RESOURCES]


def test_the_table_reads_the_one_description_of_the_resources() -> None:
    table = resources_table()
    assert list(table["period"]) == [
        "1990-01..1999-12",
        "2000-01..2012-02",
        "2012-03..2014-12",
        "2015-01..2016-12",
        "2017-01..",
    ]
    assert list(table["dataset_id"]) == [r.dataset_id for r in RESOURCES]
    assert list(table["month is the month of"]) == ["approval"] * 2 + ["registration"] * 3
    assert list(table["columns"]) == ["10, no remaining_lease"] * 3 + ["11", "11"]


def test_sample_rows_put_each_format_side_by_side() -> None:
    rows = sample_rows()
    assert len(rows) == 10  # two of each resource
    first = rows.loc["1990-01..1999-12"].iloc[0]
    assert (first["month"], first["flat_type"], first["resale_price"]) == (
        "1990-01",
        "1 ROOM",
        "9000",
    )
    assert (rows.loc["1990-01..1999-12", "remaining_lease"] == ABSENT).all()
    assert rows.loc["2000-01..2012-02", "resale_price"].str.endswith(".0").all()
    assert rows.loc["2000-01..2012-02", "flat_model"].iloc[0] == "New Generation"
    assert rows.loc["2012-03..2014-12", "storey_range"].iloc[0] == "01 TO 05"
    assert rows.loc["2015-01..2016-12", "remaining_lease"].str.fullmatch(r"\d+").all()
    assert rows.loc["2017-01..", "remaining_lease"].str.contains("years").all()


def test_the_sample_files_are_the_ones_generate_writes(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("generate", SAMPLE_DIR / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    for path in generate.write(tmp_path):
        assert path.read_bytes() == (SAMPLE_DIR / path.name).read_bytes(), path.name


def test_a_missing_sample_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="resale-flat-prices-based-on-approval-date-1990"):
        sample_rows(tmp_path)
