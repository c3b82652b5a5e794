"""Settings are read in one place and bad values are refused up front, saying what is expected."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

import hdb_elt.settings
from hdb_elt.months import Month, MonthError
from hdb_elt.settings import (
    DEFAULT_DELIVERY_DIR,
    DEFAULT_WAREHOUSE_PATH,
    REPO_ROOT,
    SNAPSHOT_DIR,
    SettingsError,
    load_settings,
)
from hdb_elt.transform import run_dbt
from hdb_elt.warehouse import NotAWarehouseError, connect, ensure_warehouse


def settings(**env: str):
    return load_settings(env, dotenv=False)


def test_defaults_give_the_classroom_window() -> None:
    s = settings()
    assert (str(s.start_month), str(s.end_month)) == ("2023-01", "2023-12")
    assert s.warehouse_path == DEFAULT_WAREHOUSE_PATH
    assert s.lookback_months == 1
    assert len(s.months) == 12


@pytest.mark.parametrize(
    "value", ["2023-13", "2023-00", "23-01", "2023/01", "2023-1", "soon", "2023-01-01"]
)
def test_malformed_month_is_refused(value: str) -> None:
    with pytest.raises(SettingsError, match=r"HDB_START_MONTH.*expected YYYY-MM|month part"):
        settings(HDB_START_MONTH=value)


def test_window_must_run_forward() -> None:
    with pytest.raises(SettingsError, match="before HDB_START_MONTH"):
        settings(HDB_START_MONTH="2023-05", HDB_END_MONTH="2023-04")


def test_windows_start_at_the_datasets_first_month_1990_01() -> None:
    whole = settings(HDB_START_MONTH="1990-01", HDB_END_MONTH="2023-12")
    assert str(whole.months[0]) == "1990-01" and len(whole.months) == 34 * 12
    with pytest.raises(SettingsError, match=r"HDB_START_MONTH=1989-12: data.gov.sg publishes "
                       r"resale prices from 1990-01"):  # fmt: skip
        settings(HDB_START_MONTH="1989-12")


def test_relative_paths_resolve_against_the_repository(tmp_path: Path) -> None:
    s = settings(HDB_WAREHOUSE_PATH="data/warehouse/other.duckdb")
    assert s.warehouse_path == REPO_ROOT / "data" / "warehouse" / "other.duckdb"


def test_missing_data_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="not a folder"):
        settings(HDB_RESALE_DATA_DIR=str(tmp_path / "nowhere"))


def test_data_dir_selects_files_mode(tmp_path: Path) -> None:
    s = settings(HDB_RESALE_DATA_DIR=str(tmp_path))
    assert s.source_mode == "files" and s.data_dir == tmp_path


def test_with_no_setting_the_bundled_snapshot_is_read(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(hdb_elt.settings, "DEFAULT_DELIVERY_DIR", tmp_path / "raw")
    s = settings()
    assert s.source_mode == "files" and s.data_dir == SNAPSHOT_DIR
    assert s.source_label == "the bundled 2023 snapshot (data/snapshot/)"
    assert "source the bundled 2023 snapshot" in s.describe()
    # `make data`'s folder takes over once it holds deliveries (any case, or compressed).
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "resale-flat-prices-2024-01.CSV").write_text("month\n2024-01\n")
    assert settings().data_dir == tmp_path / "raw"


def test_another_folder_is_named_by_its_path() -> None:
    s = settings(HDB_RESALE_DATA_DIR=str(DEFAULT_DELIVERY_DIR.parent))
    assert s.source_label == "the folder data/"


def test_the_api_only_when_a_setting_asks(tmp_path: Path) -> None:
    s = settings(HDB_RESALE_SOURCE="api")
    assert s.source_mode == "api" and s.data_dir is None
    assert s.source_label.startswith("the data.gov.sg API (https://data.gov.sg/")
    assert s.child_env()["HDB_RESALE_SOURCE"] == "api"
    assert settings().child_env()["HDB_RESALE_SOURCE"] == "files"
    with pytest.raises(SettingsError, match="both set: a run reads one source"):
        settings(HDB_RESALE_SOURCE="api", HDB_RESALE_DATA_DIR=str(tmp_path))
    with pytest.raises(SettingsError, match="HDB_RESALE_SOURCE='web': expected files"):
        settings(HDB_RESALE_SOURCE="web")


def test_the_snapshot_is_the_real_2023_deliveries_with_their_licence() -> None:
    manifest = json.loads((SNAPSHOT_DIR / "manifest.json").read_text())
    months = manifest["months"]
    assert sorted(months) == [f"2023-{m:02d}" for m in range(1, 13)]
    assert sum(entry["rows"] for entry in months.values()) == 25_777
    for entry in months.values():
        data = (SNAPSHOT_DIR / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert data.count(b"\n") == entry["rows"] + 1
    shared = REPO_ROOT.parent / "shared" / "data" / "hdb_resale" / "monthly"
    if shared.is_dir():  # the same bytes as the reference deliveries beside the repository
        for entry in months.values():
            assert (shared / entry["file"]).read_bytes() == (
                SNAPSHOT_DIR / entry["file"]
            ).read_bytes()
    readme = (SNAPSHOT_DIR / "README.md").read_text()
    assert "Singapore Open Data Licence version 1.0" in readme
    assert "d_8b84c4ee58e3cfc0ece0d773c8ca6abc" in readme


@pytest.mark.parametrize(
    ("content", "looks"),
    [(b"month,town\n2023-01,BEDOK\n", "it is a text file, starting 'month,town\\n2'"),
     (b"", "it is empty"), (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x00", "it does not start as")],
)  # fmt: skip
def test_a_warehouse_path_that_is_not_duckdb_is_refused(
    tmp_path: Path, content: bytes, looks: str
) -> None:
    path = tmp_path / "sales.csv"
    path.write_bytes(content)
    s = settings(HDB_WAREHOUSE_PATH=str(path))  # settings allow it: a checkpoint replaces it
    for use in (ensure_warehouse, lambda p: connect(p, read_only=True).__enter__()):
        with pytest.raises(NotAWarehouseError) as refused:
            use(s.warehouse_path)
        assert f"HDB_WAREHOUSE_PATH={path} is not a DuckDB database ({looks}" in str(refused.value)
    with pytest.raises(NotAWarehouseError):
        run_dbt(["debug"], s)
    assert path.read_bytes() == content


def test_warehouse_path_that_is_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="is a folder"):
        settings(HDB_WAREHOUSE_PATH=str(tmp_path))


@pytest.mark.parametrize("value", ["-1", "one", "1.5"])
def test_lookback_must_be_a_whole_number(value: str) -> None:
    with pytest.raises(SettingsError, match="HDB_LOOKBACK_MONTHS"):
        settings(HDB_LOOKBACK_MONTHS=value)


def test_api_key_is_never_shown() -> None:
    s = settings(DATA_GOV_SG_API_KEY="secret-key-123")
    assert s.api_key == "secret-key-123"
    assert "secret-key-123" not in repr(s)
    assert "secret-key-123" not in s.describe()


def test_month_arithmetic() -> None:
    m = Month.parse("2023-01")
    assert str(m.shift(-1)) == "2022-12"
    assert str(m.shift(13)) == "2024-02"
    assert [str(x) for x in Month.parse("2022-11").range_to(Month.parse("2023-02"))] == [
        "2022-11",
        "2022-12",
        "2023-01",
        "2023-02",
    ]
    with pytest.raises(MonthError):
        Month.parse("2023-13")


def test_notebook_parameters_override_the_environment(monkeypatch, tmp_path: Path) -> None:
    from hdb_elt.settings import stage_settings

    monkeypatch.setenv("HDB_START_MONTH", "2023-01")
    monkeypatch.setenv("HDB_END_MONTH", "2023-12")
    s = stage_settings(start_month="2023-03", end_month="2023-04", warehouse_path=tmp_path / "w.db")
    assert (str(s.start_month), str(s.end_month)) == ("2023-03", "2023-04")
    assert s.warehouse_path == tmp_path / "w.db"
    assert str(stage_settings().start_month) == "2023-01"  # None keeps the environment's
    with pytest.raises(SettingsError, match="HDB_END_MONTH"):
        stage_settings(end_month="2023-4")
