"""Which months a run extracts, and the ``months`` bookmark it leaves behind."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from tap_helpers import run_tap, sale, write_csv

from tap_hdb_resale.months import describe_months
from tap_hdb_resale.state import plan_months, read_months, remember
from tap_hdb_resale.streams import ResaleFlatPricesStream

WINDOW = ["2023-01", "2023-02", "2023-03", "2023-04"]


def known(*months: str, rows: int = 5, fingerprint: str | None = "f") -> dict:
    return {month: {"rows": rows, "fingerprint": fingerprint} for month in months}


def test_plan_first_run_extracts_everything() -> None:
    plan = plan_months(WINDOW, {}, lookback=1)
    assert plan.extract == dict.fromkeys(WINDOW, "new")


def test_plan_lookback_is_the_newest_loaded_month_and_those_before() -> None:
    plan = plan_months(WINDOW, known("2023-01", "2023-02", "2023-03"), lookback=1)
    assert plan.extract == {"2023-02": "lookback", "2023-03": "lookback", "2023-04": "new"}
    assert plan.unchanged == ["2023-01"]
    assert plan_months(WINDOW, known(*WINDOW), lookback=0).extract == {}


def test_plan_empty_month_is_new_again_and_not_the_newest() -> None:
    state = {**known("2023-01", "2023-02"), "2023-03": {"rows": 0, "fingerprint": None}}
    plan = plan_months(WINDOW, state, lookback=0)
    assert plan.extract == {"2023-03": "new", "2023-04": "new"}


def test_plan_files_mode_compares_fingerprints() -> None:
    available = {"2023-01": "f", "2023-02": "other", "2023-03": "f"}
    plan = plan_months(WINDOW, known("2023-01", "2023-02", "2023-03"), 0, available)
    assert plan.extract == {"2023-02": "changed"}
    assert plan.unchanged == ["2023-01", "2023-03"]
    assert plan.missing == ["2023-04"]
    assert "changed: 2023-02" in plan.describe()


def test_remember_keeps_other_months_and_sorts() -> None:
    before = known("2022-12", "2023-02")
    after = remember(before, {"2023-01": (3, "abc")})
    assert list(after) == ["2022-12", "2023-01", "2023-02"]
    assert after["2023-01"] == {"rows": 3, "fingerprint": "abc"}
    assert before == known("2022-12", "2023-02")


def test_malformed_state_is_refused_with_a_way_out() -> None:
    with pytest.raises(ValueError, match="meltano state clear"):
        read_months({"months": {"2023-1": {"rows": 1}}})
    with pytest.raises(ValueError, match="no integer 'rows'"):
        read_months({"months": {"2023-01": {"count": 1}}})


def test_describe_months_compresses_runs() -> None:
    assert describe_months(["2023-03", "2023-01", "2023-02", "2023-05"]) == (
        "2023-01..2023-03, 2023-05"
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for month, count in (("2023-01", 3), ("2023-02", 2), ("2023-03", 4), ("2023-04", 1)):
        write_csv(
            tmp_path / f"resale-flat-prices-{month}.csv", [sale(month, i) for i in range(count)]
        )
    return tmp_path


def config(folder: Path, lookback: int = 1) -> dict:
    return {
        "data_dir": str(folder),
        "start_month": "2023-01",
        "end_month": "2023-04",
        "lookback_months": lookback,
    }


def test_plan_files_mode_has_no_lookback() -> None:
    """A file's fingerprint says whether its month changed: unchanged files are not re-read
    into raw, whatever the lookback (which is for the API, where only a download can tell)."""
    available = dict.fromkeys(WINDOW, "f")
    plan = plan_months(WINDOW, known(*WINDOW), 1, available)
    assert plan.extract == {}
    assert plan.unchanged == WINDOW


def test_runs_extract_new_then_changed_only(folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = run_tap(config(folder))
    assert first.month_counts() == {"2023-01": 3, "2023-02": 2, "2023-03": 4, "2023-04": 1}
    assert {m: e["rows"] for m, e in first.months.items()} == first.month_counts()
    assert all(len(e["fingerprint"]) == 64 for e in first.months.values())

    with caplog.at_level(logging.INFO):
        second = run_tap(config(folder), first.state)
    assert second.records == []
    assert second.months == first.months
    assert second.types[-1] == "STATE"
    assert (
        "Months to extract: new: none; changed: none; lookback: none. "
        "Skipped as unchanged: 2023-01..2023-04." in caplog.text
    )

    # 2023-01 is delivered again with a revised row: only it comes again.
    write_csv(folder / "resale-flat-prices-2023-01.csv", [sale("2023-01", i) for i in (0, 1, 7)])
    third = run_tap(config(folder), second.state)
    assert third.month_counts() == {"2023-01": 3}
    assert third.months["2023-01"]["fingerprint"] != first.months["2023-01"]["fingerprint"]
    assert third.months["2023-02"] == first.months["2023-02"]


def test_lookback_zero_and_unchanged_files_extract_nothing(folder: Path) -> None:
    first = run_tap(config(folder, lookback=0))
    again = run_tap(config(folder, lookback=0), first.state)
    assert again.records == []
    assert again.months == first.months


def test_format_alone_is_not_a_change(folder: Path) -> None:
    first = run_tap(config(folder, lookback=0))
    rows = [sale("2023-02", i) for i in range(2)]
    write_csv(
        folder / "resale-flat-prices-2023-02.csv",
        rows,
        columns=list(reversed(rows[0])),
        bom=True,
        newline="\r\n",
    )
    assert run_tap(config(folder, lookback=0), first.state).records == []


def test_state_changes_only_after_the_last_record(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Intermediate STATE messages (here every 2 records) never claim a month early."""
    monkeypatch.setattr(ResaleFlatPricesStream, "STATE_MSG_FREQUENCY", 2)
    before = {"bookmarks": {"resale_flat_prices": {"months": known("2022-12")}}}
    run = run_tap(config(folder), before)
    months = [s["bookmarks"]["resale_flat_prices"]["months"] for s in run.states]
    assert len(run.records) == 10
    assert len(months) >= 2
    assert all(m == known("2022-12") for m in months[:-1])
    assert set(months[-1]) == {"2022-12", "2023-01", "2023-02", "2023-03", "2023-04"}
