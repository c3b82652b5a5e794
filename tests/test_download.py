"""``make data`` writes one delivery per month, a manifest, and warns on reference drift."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
from fake_datagov import fake_datagov

from hdb_elt.download import download_months, reference_counts
from hdb_elt.settings import load_settings
from hdb_elt.warehouse import SOURCE_COLUMNS


def record(month: str, i: int) -> dict:
    # The API serves numbers as numbers; deliveries must carry them as data.gov.sg's CSV does.
    return {
        "month": month, "town": "BEDOK", "flat_type": "3 ROOM", "block": f"{i}A",
        "street_name": "BEDOK NTH RD", "storey_range": "04 TO 06", "floor_area_sqm": 67,
        "flat_model": "New Generation", "lease_commence_date": 1980,
        "remaining_lease": "56 years 02 months", "resale_price": 350000 + i,
    }  # fmt: skip


def test_download_writes_deliveries_manifest_and_reference_warning(tmp_path: Path, capsys) -> None:
    served = {"2023-01": [record("2023-01", i) for i in range(5)], "2023-02": []}
    with fake_datagov(served) as api:
        settings = load_settings(
            {"HDB_START_MONTH": "2023-01", "HDB_END_MONTH": "2023-02",
             "DATA_GOV_SG_API_URL": api["url"], "DATA_GOV_SG_API_KEY": "planted-key-7f3a"},
            dotenv=False,
        )  # fmt: skip
        results = download_months(settings, tmp_path)

    january = tmp_path / "resale-flat-prices-2023-01.csv"
    with january.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == list(SOURCE_COLUMNS)
    assert rows[1] == ["2023-01", "BEDOK", "3 ROOM", "0A", "BEDOK NTH RD", "04 TO 06", "67",
                       "New Generation", "1980", "56 years 02 months", "350000"]  # fmt: skip
    assert len(rows) == 6
    assert not (tmp_path / "resale-flat-prices-2023-02.csv").exists()  # nothing published
    assert not list(tmp_path.glob("*.partial"))

    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["months"]["2023-01"]["rows"] == 5
    assert (
        manifest["months"]["2023-01"]["sha256"] == hashlib.sha256(january.read_bytes()).hexdigest()
    )
    assert manifest["months"]["2023-02"]["rows"] == 0
    assert [r.rows for r in results] == [5, 0]

    out = capsys.readouterr().out
    assert reference_counts()["2023-01"] == 2552
    assert "2023-01: downloaded 5 rows, the workbook's reference has 2,552" in out
    assert "planted-key-7f3a" not in out + (tmp_path / "manifest.json").read_text()
    assert all(r["headers"].get("x-api-key") == "planted-key-7f3a" for r in api["requests"])


def test_an_empty_answer_never_replaces_an_earlier_download(tmp_path: Path, capsys) -> None:
    with fake_datagov({"2023-01": [record("2023-01", i) for i in range(3)]}) as api:
        settings = load_settings(
            {"HDB_START_MONTH": "2023-01", "HDB_END_MONTH": "2023-01",
             "DATA_GOV_SG_API_URL": api["url"]},
            dotenv=False,
        )  # fmt: skip
        download_months(settings, tmp_path)
    before = (tmp_path / "resale-flat-prices-2023-01.csv").read_bytes()
    manifest_before = json.loads((tmp_path / "manifest.json").read_text())["months"]

    with fake_datagov({}) as api:  # data.gov.sg answers, but with no rows for the month
        settings = load_settings(
            {"HDB_START_MONTH": "2023-01", "HDB_END_MONTH": "2023-01",
             "DATA_GOV_SG_API_URL": api["url"]},
            dotenv=False,
        )  # fmt: skip
        download_months(settings, tmp_path)
    assert (tmp_path / "resale-flat-prices-2023-01.csv").read_bytes() == before
    assert json.loads((tmp_path / "manifest.json").read_text())["months"] == manifest_before
    assert "2023-01: data.gov.sg returned no rows, so the earlier download" in (
        capsys.readouterr().out
    )


def test_an_interrupted_download_leaves_a_manifest_of_the_files_present(
    tmp_path: Path, monkeypatch
) -> None:
    from tap_hdb_resale.api import DataGovSgClient

    real_iter_month = DataGovSgClient.iter_month

    def iter_month(self, month: str):
        if month == "2023-02":
            raise ConnectionError("the network went away")
        return real_iter_month(self, month)

    monkeypatch.setattr(DataGovSgClient, "iter_month", iter_month)
    served = {m: [record(m, i) for i in range(2)] for m in ("2023-01", "2023-02")}
    with fake_datagov(served) as api:
        settings = load_settings(
            {"HDB_START_MONTH": "2023-01", "HDB_END_MONTH": "2023-02",
             "DATA_GOV_SG_API_URL": api["url"]},
            dotenv=False,
        )  # fmt: skip
        with pytest.raises(ConnectionError):
            download_months(settings, tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert sorted(manifest["months"]) == ["2023-01"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "manifest.json",
        "resale-flat-prices-2023-01.csv",
    ]
    january = tmp_path / "resale-flat-prices-2023-01.csv"
    assert (
        manifest["months"]["2023-01"]["sha256"] == hashlib.sha256(january.read_bytes()).hexdigest()
    )
