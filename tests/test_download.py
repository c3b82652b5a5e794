"""``make data`` downloads the dataset in one export (data.gov.sg's download API, stood in for
on loopback), writes one delivery per month and a manifest, warns on reference drift, and
fails fast, saying what to do, when there is no network."""

from __future__ import annotations

import csv
import hashlib
import json
import time
from pathlib import Path

import pytest
import tap_hdb_resale.api
from fake_datagov import fake_datagov
from tap_hdb_resale.resources import CURRENT, RESOURCES
from tap_hdb_resale.window import collect_months

from hdb_elt.download import download_months, reference_counts
from hdb_elt.settings import load_settings
from hdb_elt.warehouse import SOURCE_COLUMNS

HISTORY = Path(__file__).resolve().parents[1] / "data" / "history_sample"


def record(month: str, i: int) -> dict:
    # The API serves numbers as numbers; deliveries must carry them as data.gov.sg's CSV does.
    return {
        "month": month, "town": "BEDOK", "flat_type": "3 ROOM", "block": f"{i}A",
        "street_name": "BEDOK NTH RD", "storey_range": "04 TO 06", "floor_area_sqm": 67,
        "flat_model": "New Generation", "lease_commence_date": 1980,
        "remaining_lease": "56 years 02 months", "resale_price": 350000 + i,
    }  # fmt: skip


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch) -> None:
    monkeypatch.setattr(tap_hdb_resale.api, "DOWNLOAD_POLL_SECONDS", 0.01)
    # The fake has no quota: five exports need not wait a minute for it.
    monkeypatch.setattr(tap_hdb_resale.api, "DOWNLOAD_CALLS_PER_MINUTE", 1000)


def settings_for(api: dict, start: str, end: str, **more: str):
    return load_settings(
        {"HDB_START_MONTH": start, "HDB_END_MONTH": end,
         "DATA_GOV_SG_DOWNLOAD_API_URL": api["download_url"], **more},
        dotenv=False,
    )  # fmt: skip


def test_download_writes_deliveries_manifest_and_reference_warning(tmp_path: Path, capsys) -> None:
    served = {"2023-01": [record("2023-01", i) for i in range(5)], "2023-02": []}
    served["2022-12"] = [record("2022-12", i) for i in range(4)]  # outside the window
    with fake_datagov(served) as api:
        settings = settings_for(api, "2023-01", "2023-02", DATA_GOV_SG_API_KEY="planted-key-7f3a")
        results = download_months(settings, tmp_path)

    january = tmp_path / "resale-flat-prices-2023-01.csv"
    with january.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == list(SOURCE_COLUMNS)
    assert rows[1] == ["2023-01", "BEDOK", "3 ROOM", "0A", "BEDOK NTH RD", "04 TO 06", "67",
                       "New Generation", "1980", "56 years 02 months", "350000"]  # fmt: skip
    assert len(rows) == 6
    assert not (tmp_path / "resale-flat-prices-2023-02.csv").exists()  # nothing published
    assert not (tmp_path / "resale-flat-prices-2022-12.csv").exists()  # not in the window
    # One export: initiate, poll until the link is named, then the CSV; never a page a month.
    paths = [r["path"].rsplit("/", 1)[-1] for r in api["requests"]]
    assert paths == [
        "initiate-download", "poll-download", "poll-download", f"{CURRENT.dataset_id}.csv"
    ]  # fmt: skip
    assert not list(tmp_path.glob("*.partial"))

    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["months"]["2023-01"]["rows"] == 5
    assert manifest["months"]["2023-01"]["dataset_id"] == CURRENT.dataset_id
    assert list(manifest["resources"]) == [CURRENT.dataset_id]
    assert (
        manifest["months"]["2023-01"]["sha256"] == hashlib.sha256(january.read_bytes()).hexdigest()
    )
    assert manifest["months"]["2023-02"]["rows"] == 0
    assert [r.rows for r in results] == [5, 0]

    out = capsys.readouterr().out
    assert reference_counts()["2023-01"] == 2552
    assert "2023-01: downloaded 5 rows, the workbook's reference has 2,552" in out
    assert "planted-key-7f3a" not in out + (tmp_path / "manifest.json").read_text()
    # The key goes to data.gov.sg's API, never to the host of the download link.
    assert [r["headers"].get("x-api-key") for r in api["requests"]] == ["planted-key-7f3a"] * 3 + [
        None
    ]


def test_an_empty_answer_never_replaces_an_earlier_download(tmp_path: Path, capsys) -> None:
    with fake_datagov({"2023-01": [record("2023-01", i) for i in range(3)]}) as api:
        download_months(settings_for(api, "2023-01", "2023-01"), tmp_path)
    before = (tmp_path / "resale-flat-prices-2023-01.csv").read_bytes()
    manifest_before = json.loads((tmp_path / "manifest.json").read_text())["months"]

    served = {"2022-12": [record("2022-12", 1)]}  # the export holds no row of the month
    with fake_datagov(served) as api:
        download_months(settings_for(api, "2023-01", "2023-01"), tmp_path)
    assert (tmp_path / "resale-flat-prices-2023-01.csv").read_bytes() == before
    assert json.loads((tmp_path / "manifest.json").read_text())["months"] == manifest_before
    assert "2023-01: data.gov.sg returned no rows, so the earlier download" in (
        capsys.readouterr().out
    )


def test_no_network_fails_within_seconds_saying_what_to_do(tmp_path: Path) -> None:
    # A port nobody listens on: the connection is refused, as on a machine with no network.
    with fake_datagov({}) as api:
        dead = api["download_url"]
    settings = load_settings(
        {"HDB_START_MONTH": "2023-01", "HDB_END_MONTH": "2023-01",
         "DATA_GOV_SG_DOWNLOAD_API_URL": dead},
        dotenv=False,
    )  # fmt: skip
    started = time.monotonic()
    with pytest.raises(tap_hdb_resale.api.NetworkError) as failure:
        download_months(settings, tmp_path)
    assert time.monotonic() - started < 10
    message = str(failure.value)
    assert "the connection was refused" in message
    assert "bundled 2023 snapshot (data/snapshot/)" in message
    assert "HDB_RESALE_DATA_DIR" in message
    assert not list(tmp_path.glob("*.csv*")), "nothing half-written stays behind"


def test_an_unresolvable_host_fails_at_once_naming_dns(tmp_path: Path) -> None:
    settings = load_settings(
        {"HDB_START_MONTH": "2023-01", "HDB_END_MONTH": "2023-01",
         "DATA_GOV_SG_DOWNLOAD_API_URL": "http://no-such-host.invalid/v1/public/api/datasets"},
        dotenv=False,
    )  # fmt: skip
    started = time.monotonic()
    with pytest.raises(tap_hdb_resale.api.NetworkError, match="could not be looked up"):
        download_months(settings, tmp_path)
    assert time.monotonic() - started < 10


def test_a_rate_limit_is_waited_out_as_the_server_asks(tmp_path: Path) -> None:
    # data.gov.sg's answer to too many calls: HTTP 429 with Retry-After; urllib3 waits it out.
    served = {"2023-01": [record("2023-01", i) for i in range(2)]}
    with fake_datagov(served, too_many_first=2) as api:
        download_months(settings_for(api, "2023-01", "2023-01"), tmp_path)
    paths = [r["path"].rsplit("/", 1)[-1] for r in api["requests"]]
    assert paths[:3] == ["initiate-download"] * 3  # two 429s, then the answer
    assert (tmp_path / "resale-flat-prices-2023-01.csv").exists()


def test_the_whole_history_comes_from_five_exports_each_in_its_own_format(
    tmp_path: Path, capsys
) -> None:
    """HDB_START_MONTH=1990-01 make data: one export of each resource, split into monthly
    files that keep the resource's header and values as delivered (``147000.0`` stays), with
    a manifest entry naming each file's dataset; the tap then reads every row of them."""
    served: dict[str, list[dict]] = {}
    for resource in RESOURCES:
        with (HISTORY / resource.file_name).open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                served.setdefault(row["month"], []).append(row)
    served["2023-01"] = [record("2023-01", i) for i in range(3)]
    with fake_datagov(served) as api:
        results = download_months(settings_for(api, "1990-01", "2023-12"), tmp_path)

    initiated = [r["path"].split("/")[-2] for r in api["requests"] if "initiate" in r["path"]]
    assert initiated == [r.dataset_id for r in RESOURCES]
    written = {item.month: item for item in results if item.rows}
    assert {m: item.rows for m, item in written.items()} == {m: len(r) for m, r in served.items()}
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert sorted(manifest["resources"]) == sorted(r.dataset_id for r in RESOURCES)
    for resource in RESOURCES:
        month = resource.first_month
        with (tmp_path / f"resale-flat-prices-{month}.csv").open(encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        assert tuple(rows[0]) == resource.columns
        assert rows[1:] == [[r[c] for c in resource.columns] for r in served[month]]
        assert manifest["months"][month]["dataset_id"] == resource.dataset_id
    with (tmp_path / "resale-flat-prices-2005-06.csv").open(encoding="utf-8") as handle:
        assert next(csv.DictReader(handle))["resale_price"].endswith(".0")
    window = sorted(written)
    delivered = collect_months(tmp_path, window)
    assert {m: d.row_count for m, d in delivered.items()} == {m: len(served[m]) for m in window}
    assert "Downloading Resale flat prices based on approval date, 1990 - 1999" in (
        capsys.readouterr().out
    )
