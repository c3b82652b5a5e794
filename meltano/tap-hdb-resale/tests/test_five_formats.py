"""The five resources since 1990: each format is read as published, rows carry their
resource's dataset id, and a file whose columns do not fit its rows' months is refused."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from tap_helpers import REPO_ROOT, json_reply, run_tap, sale, write_csv

from tap_hdb_resale.api import DataGovSgClient
from tap_hdb_resale.deliveries import DeliveryError, month_in_name, read_delivery
from tap_hdb_resale.resources import (
    COLUMNS,
    CURRENT,
    RESOURCES,
    WITHOUT_REMAINING_LEASE,
    by_dataset_id,
    resource_of,
)
from tap_hdb_resale.tap import TapHdbResale
from tap_hdb_resale.window import collect_months

HISTORY = REPO_ROOT / "data" / "history_sample"


def fixture_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.first_month)
def test_each_resource_file_is_read_as_published(resource) -> None:
    path = HISTORY / resource.file_name
    assert month_in_name(path.name) is None  # "1990-1999" is not a month
    rows = read_delivery(path)
    expected = fixture_rows(path)
    assert len(rows) == len(expected) > 0
    with path.open(encoding="utf-8") as handle:
        assert tuple(handle.readline().strip().split(",")) == resource.columns
    for row, delivered in zip(rows, expected, strict=True):
        record = row.as_record()
        assert resource_of(row.month) == resource
        # Every value exactly as delivered; a column the resource lacks is None, not "".
        assert record == {c: delivered[c] if c in resource.columns else None for c in COLUMNS}


def test_a_folder_of_the_five_files_and_monthly_2023_loads_every_row(
    tmp_path: Path, shared_monthly: Path
) -> None:
    for resource in RESOURCES:
        shutil.copy(HISTORY / resource.file_name, tmp_path)
    for path in shared_monthly.glob("*.csv"):
        shutil.copy(path, tmp_path)
    run = run_tap({"data_dir": str(tmp_path), "start_month": "1990-01", "end_month": "2023-12"})

    by_dataset = Counter(record["_dataset_id"] for record in run.records)
    expected = {r.dataset_id: len(fixture_rows(HISTORY / r.file_name)) for r in RESOURCES}
    expected[CURRENT.dataset_id] += sum(
        len(fixture_rows(path)) for path in shared_monthly.glob("*.csv")
    )
    assert by_dataset == expected
    assert (
        expected[RESOURCES[0].dataset_id] == 240
        and sum(expected.values()) == 240 + 292 + 68 + 48 + 144 + 25_777
    )
    for record in run.records:
        resource = by_dataset_id(record["_dataset_id"])
        assert resource.holds(record["month"])
        assert (record["remaining_lease"] is None) == (not resource.has_remaining_lease)
    assert len(run.months) == (2023 - 1990 + 1) * 12


def test_monthly_files_of_old_formats_are_read_too(tmp_path: Path) -> None:
    old = [sale("1995-03", i) for i in range(3)]
    write_csv(
        tmp_path / "resale-flat-prices-1995-03.csv", old, columns=list(WITHOUT_REMAINING_LEASE)
    )
    write_csv(
        tmp_path / "resale-flat-prices-2016-01.csv", [sale("2016-01", 1, remaining_lease="70")]
    )
    run = run_tap({"data_dir": str(tmp_path), "start_month": "1995-01", "end_month": "2016-12"})
    assert [(r["month"], r["remaining_lease"], r["_dataset_id"]) for r in run.records] == [
        *[("1995-03", None, RESOURCES[0].dataset_id)] * 3,
        ("2016-01", "70", RESOURCES[3].dataset_id),
    ]


@pytest.mark.parametrize(
    ("columns", "month", "lacks"),
    [(WITHOUT_REMAINING_LEASE, "2019-05", "lacks"), (COLUMNS, "1995-03", "has")],
)
def test_a_file_whose_columns_do_not_fit_its_months_resource_is_refused(
    tmp_path: Path, columns, month: str, lacks: str
) -> None:
    rows = [sale("2014-12", 1), sale(month, 2)] if lacks == "lacks" else [sale(month, 2)]
    if lacks == "has":
        rows.insert(0, sale("2016-12", 1))
    path = write_csv(tmp_path / "mixed.csv", rows, columns=list(columns))
    with pytest.raises(DeliveryError) as caught:
        read_delivery(path)
    message = str(caught.value)
    resource = resource_of(month)
    assert message.startswith("mixed.csv, line 3, column remaining_lease: ")
    assert f"a row of {month}, but the file {lacks} remaining_lease" in message
    assert resource.dataset_id in message
    assert "(rule: a file's columns are those of the resource of its rows' months)" in message


def test_a_month_before_1990_and_a_header_missing_more_than_the_lease_are_refused(
    tmp_path: Path,
) -> None:
    early = write_csv(
        tmp_path / "early.csv", [sale("1989-12", 1)], columns=list(WITHOUT_REMAINING_LEASE)
    )
    with pytest.raises(DeliveryError, match=r"early.csv, line 2, column month: a row of 1989-12: "
                       r"data.gov.sg publishes no resale prices before 1990-01"):  # fmt: skip
        read_delivery(early)
    narrow = [c for c in WITHOUT_REMAINING_LEASE if c != "flat_model"]
    path = write_csv(tmp_path / "narrow.csv", [sale("1995-01", 1)], columns=narrow)
    with pytest.raises(DeliveryError, match=r"narrow.csv, line 1, column flat_model, "
                       r"remaining_lease: missing from the header"):  # fmt: skip
        read_delivery(path)


def test_the_fingerprint_of_an_old_month_is_stable_and_sees_its_rows(tmp_path: Path) -> None:
    path = shutil.copy(HISTORY / RESOURCES[1].file_name, tmp_path)
    first = collect_months(tmp_path, ["2005-06"])["2005-06"]
    assert collect_months(tmp_path, ["2005-06"])["2005-06"] == first and first.row_count == 2
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("2005-06,"))
    lines[at] = lines[at].rsplit(",", 1)[0] + ",1.0"  # another price
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert collect_months(tmp_path, ["2005-06"])["2005-06"].fingerprint != first.fingerprint


def test_the_tap_refuses_a_window_before_1990() -> None:
    with pytest.raises(Exception, match="publishes resale prices from 1990-01"):
        TapHdbResale(config={"start_month": "1989-12", "end_month": "1990-02"})


def test_api_mode_reads_each_month_from_its_resource(fake_api) -> None:
    """A window across the 2014/2015 boundary asks two datasets; the 2014 records, which have
    no remaining_lease, are null there and carry their own dataset id."""

    def respond(query: dict[str, str]):
        month = json.loads(query["filters"])["month"]
        resource = resource_of(month)
        if query["resource_id"] != resource.dataset_id:
            return json_reply({"success": True, "result": {"records": [], "total": 0}})
        record = {c: v for c, v in sale(month, 1).items() if c in resource.columns}
        return json_reply({"success": True, "result": {"records": [record], "total": 1}})

    api = fake_api(respond)
    config = {"start_month": "2014-11", "end_month": "2015-02", "api_url": api.url,
              "max_retries": 0}  # fmt: skip
    run = run_tap(config)
    assert [(r["month"], r["remaining_lease"], r["_dataset_id"]) for r in run.records] == [
        ("2014-11", None, RESOURCES[2].dataset_id),
        ("2014-12", None, RESOURCES[2].dataset_id),
        ("2015-01", "54 years 01 month", RESOURCES[3].dataset_id),
        ("2015-02", "54 years 01 month", RESOURCES[3].dataset_id),
    ]
    assert {r["query"]["resource_id"] for r in api.requests} == {
        RESOURCES[2].dataset_id,
        RESOURCES[3].dataset_id,
    }
    assert f"resource_id={RESOURCES[2].dataset_id}" in run.records[0]["_source"]


def test_the_resource_id_setting_overrides_the_newest_resource_only() -> None:
    client = DataGovSgClient(resource_id="d_republished")
    assert client.dataset_id_of("2023-07") == "d_republished"
    assert client.dataset_id_of("1995-03") == RESOURCES[0].dataset_id
    assert DataGovSgClient().dataset_id_of("2023-07") == CURRENT.dataset_id


def test_a_multi_month_file_is_read_once_to_emit_all_its_months(tmp_path: Path, monkeypatch):
    import tap_hdb_resale.window as window

    shutil.copy(HISTORY / RESOURCES[1].file_name, tmp_path)
    reads: list[str] = []
    real = window.read_table
    monkeypatch.setattr(
        window, "read_table", lambda path, *a, **k: reads.append(path.name) or real(path, *a, **k)
    )
    run = run_tap({"data_dir": str(tmp_path), "start_month": "2001-01", "end_month": "2001-12"})
    assert reads == [RESOURCES[1].file_name]
    assert run.month_counts() == {f"2001-{m:02d}": 2 for m in range(1, 13)}
