"""The benchmark's synthetic deliveries: seeded, shaped like the real ones, and clean."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pandas as pd
import pytest
from tap_hdb_resale.resources import resource_of
from tap_hdb_resale.window import collect_months

from classroom.cli import main as cli
from hdb_elt.months import Month
from hdb_elt.synthetic import (
    CURRENT,
    FILE_PREFIX,
    MANIFEST,
    PRICE_INDEX,
    SynthesisError,
    five_storey_band,
    month_sizes,
    parse_remaining_lease,
    remaining_lease_text,
    synthesize,
)
from hdb_elt.validation import validate_load
from hdb_elt.warehouse import SOURCE_COLUMNS

WINDOW = ("1990-01", "2025-12")
MONTHS = 432


def read_rows(folder: Path) -> pd.DataFrame:
    """Every row of a synthesis as text, with where it came from (as the raw layer has it)."""
    frames = []
    for path in sorted(folder.glob(f"{FILE_PREFIX}*.csv")):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        frames.append(frame.assign(_source=str(path), _source_row=range(2, len(frame) + 2)))
    return pd.concat(frames, ignore_index=True).assign(_load_id="synthetic")


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def synthetic(shared_monthly: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("synthetic")
    synthesize(shared_monthly, folder, 5_000, seed=7)
    return folder


def test_same_seed_writes_identical_bytes(shared_monthly: Path, synthetic: Path, tmp_path: Path):
    again = synthesize(shared_monthly, tmp_path / "again", 5_000, seed=7)
    assert again.rows == 5_000
    assert contents(tmp_path / "again") == contents(synthetic)


def test_another_seed_writes_other_rows(shared_monthly: Path, synthetic: Path, tmp_path: Path):
    synthesize(shared_monthly, tmp_path / "other", 5_000, seed=8)
    ours, theirs = contents(synthetic), contents(tmp_path / "other")
    assert ours.keys() == theirs.keys()
    differing = [name for name in ours if name != MANIFEST and ours[name] != theirs[name]]
    assert len(differing) == MONTHS


def test_one_file_per_month_named_and_shaped_like_the_deliveries(
    shared_monthly: Path, synthetic: Path
):
    months = [str(m) for m in Month.parse(WINDOW[0]).range_to(Month.parse(WINDOW[1]))]
    names = sorted(p.name for p in synthetic.glob("*.csv"))
    assert names == [f"resale-flat-prices-{m}.csv" for m in months]
    real_header = (shared_monthly / "resale-flat-prices-2023-01.csv").read_text().splitlines()[0]
    assert real_header == ",".join(CURRENT.columns)
    for path in synthetic.glob("*.csv"):
        text = path.read_text(encoding="utf-8")
        month = path.stem.removeprefix(FILE_PREFIX)
        # The header of the resource that publishes the month: ten columns before 2015.
        assert text.splitlines()[0] == ",".join(resource_of(month).columns)
        assert "\r" not in text and text.endswith("\n")
        rows = list(csv.DictReader(text.splitlines()))
        assert {row["month"] for row in rows} == {month}


def test_row_counts_are_as_asked(synthetic: Path, shared_monthly: Path, tmp_path: Path):
    rows = read_rows(synthetic)
    assert len(rows) == 5_000
    per_month = rows.groupby("month").size()
    assert per_month.max() - per_month.min() <= 1
    assert month_sizes(10, 4) == [3, 3, 2, 2]
    # More rows than the reference month has: its rows are cycled, in a new order each time.
    synthesize(shared_monthly, tmp_path / "big", 3 * 2_500, start="2001-02", end="2001-04")
    big = read_rows(tmp_path / "big").groupby("month").size().to_dict()
    assert big == {"2001-02": 2_500, "2001-03": 2_500, "2001-04": 2_500}


def test_prices_follow_the_index_and_are_perturbed(tmp_path: Path):
    # One known row per calendar month, so every synthetic row can be traced to its source.
    source = tmp_path / "source"
    source.mkdir()
    for month in range(1, 13):
        (source / f"resale-flat-prices-2023-{month:02d}.csv").write_text(
            ",".join(SOURCE_COLUMNS) + "\n"
            f"2023-{month:02d},BEDOK,4 ROOM,1,BEDOK NTH RD,04 TO 06,92,Model A,1980,"
            "55 years 06 months,500000\n"
        )
    synthesize(source, tmp_path / "out", 2_400, start="1995-01", end="2024-12", seed=1)
    rows = read_rows(tmp_path / "out")
    prices = rows["resale_price"].astype(float)
    year = rows["month"].str.slice(0, 4).astype(int)
    # 500,000 in 2023, so 500,000 * index / 177 in its year (1995: 66), times 0.9 to 1.1.
    expected = year.map(lambda y: 500_000 * PRICE_INDEX[y] / 177)
    assert (prices / expected).between(0.9 - 1e-5, 1.1 + 1e-5).all()
    assert prices[year == 1995].between(167_000, 206_000).all()
    assert prices.nunique() > 2_300  # perturbed row by row, not copied
    ratio = (prices / expected).mean()
    assert 0.98 < ratio < 1.02
    # The flat is 43 years old in 2023: in 1995 it is 43 * 35 / 63 = 24 years old.
    first = rows[rows["month"] == "1995-01"].iloc[0]
    assert first["lease_commence_date"] == "1971"
    later = rows[rows["month"] == "2024-01"].iloc[0]
    assert later["remaining_lease"] == "54 years 06 months"


def test_no_price_is_implausible_for_its_era(synthetic: Path):
    rows = read_rows(synthetic)
    prices = rows["resale_price"].astype(float)
    year = rows["month"].str.slice(0, 4).astype(int)
    # The real 1990s: from a few thousand dollars; a few hundred thousand at the start, up to
    # about 900,000 for the largest flats at the 1997 peak.
    assert prices[year < 2000].between(5_000, 1_000_000).all()
    assert prices[year < 1992].max() < 300_000
    assert prices[year >= 2020].min() > 100_000
    per_year = prices.groupby(year).median()
    assert per_year[2023] / per_year[1990] > 5  # the long run rises about sevenfold
    assert per_year[1997] > per_year[1999]  # and the Asian financial crisis shows


def test_leases_fit_their_new_year(synthetic: Path):
    rows = read_rows(synthetic)
    year = rows["month"].str.slice(0, 4).astype(int)
    lease = rows["lease_commence_date"].astype(int)
    assert lease.between(1960, 2025).all() and (lease <= year).all()
    # The remaining lease where the resource has one: today's words from 2017, years before.
    current = rows[year >= 2017]
    remaining = current["remaining_lease"].map(parse_remaining_lease)
    assert remaining.between(0, 99 * 12).all()
    # About 99 years minus the flat's age (the reference's months-into-the-lease kept).
    age_months = (year[year >= 2017] - lease[year >= 2017]) * 12
    assert ((99 * 12 - age_months) - remaining).abs().max() <= 24
    whole_years = rows.loc[year.between(2015, 2016), "remaining_lease"].astype(int)
    age_years = (year - lease)[year.between(2015, 2016)]
    assert ((99 - age_years) - whole_years).abs().max() <= 2
    assert rows.loc[year < 2015, "remaining_lease"].isna().all()


def test_each_era_is_written_in_its_resources_format(synthetic: Path):
    def era(first: str, last: str) -> pd.DataFrame:
        rows = read_rows(synthetic)
        return rows[rows["month"].between(first, last)]

    nineties, two_thousands = era("1990-01", "1999-12"), era("2000-01", "2012-02")
    mar_2012, years_2015 = era("2012-03", "2014-12"), era("2015-01", "2016-12")
    current = era("2017-01", "2025-12")
    # 1990s: flat models in capitals; MULTI GENERATION spaced (2000-2012 too).
    assert (nineties["flat_model"] == nineties["flat_model"].str.upper()).all()
    assert {"NEW GENERATION", "IMPROVED", "MODEL A"} <= set(nineties["flat_model"])
    for rows in (nineties, two_thousands):
        assert "MULTI-GENERATION" not in set(rows["flat_type"])
    assert "New Generation" in set(two_thousands["flat_model"])
    # 2000-Feb 2012: every price written like 147000.0; no other era writes one so.
    assert two_thousands["resale_price"].str.fullmatch(r"\d+\.0").all()
    others = pd.concat([nineties, mar_2012, years_2015, current])
    assert others["resale_price"].str.fullmatch(r"\d+").all()

    # Mar 2012-2014: some five-storey bands beside three-storey ones; nowhere else.
    def five(rows: pd.DataFrame) -> pd.Series:
        low, high = rows["storey_range"].str.split(" TO ", expand=True).astype(int).T.values
        return pd.Series(high - low == 4)

    assert 0.2 < five(mar_2012).mean() < 0.4
    assert not five(pd.concat([nineties, two_thousands, years_2015, current])).any()
    lowest = mar_2012["storey_range"].str.slice(0, 2).astype(int)
    assert (lowest[five(mar_2012).to_numpy()] % 5 == 1).all()  # 01 TO 05, 06 TO 10, ...
    # 2015-2016: remaining lease in whole years; 2017 on: today's words.
    assert years_2015["remaining_lease"].str.fullmatch(r"\d{2}").all()
    assert current["remaining_lease"].str.fullmatch(r"\d+ years( \d{2} months?)?").all()
    assert five_storey_band("04 TO 06") == "01 TO 05"
    assert five_storey_band("49 TO 51") == "46 TO 50"


def test_a_month_written_alone_is_the_same_month(shared_monthly: Path, synthetic: Path, tmp_path):
    # Each month has its own generator: 2013-04 alone is 2013-04 of the whole history.
    whole = (synthetic / "resale-flat-prices-2013-04.csv").read_text().splitlines()
    alone = synthesize(
        shared_monthly, tmp_path / "alone", len(whole) - 1, start="2013-04", end="2013-04", seed=7
    )
    assert alone.files[0].read_text().splitlines() == whole


def test_remaining_lease_words_match_the_reference():
    assert remaining_lease_text(61 * 12 + 4) == "61 years 04 months"
    assert remaining_lease_text(61 * 12 + 1) == "61 years 01 month"
    assert remaining_lease_text(61 * 12) == "61 years"
    assert parse_remaining_lease("61 years 01 month") == 61 * 12 + 1
    assert parse_remaining_lease("") is None


def test_the_tap_and_the_validation_gate_accept_every_current_row(synthetic: Path):
    window = [str(m) for m in Month.parse(CURRENT.first_month).range_to(Month.parse(WINDOW[1]))]
    delivered = collect_months(synthetic, window, logging.getLogger("test"))
    rows = read_rows(synthetic)
    current = rows[rows["month"] >= CURRENT.first_month]
    assert sum(d.row_count for d in delivered.values()) == len(current)

    report = validate_load(current, CURRENT.first_month, WINDOW[1])
    assert not report.blocked
    assert report.quarantined_rows == 0
    assert set(report.results["status"]) <= {"pass", "info"}


def test_the_tap_and_the_validation_gate_accept_every_row(synthetic: Path):
    window = [str(m) for m in Month.parse(WINDOW[0]).range_to(Month.parse(WINDOW[1]))]
    delivered = collect_months(synthetic, window, logging.getLogger("test"))
    assert sum(d.row_count for d in delivered.values()) == 5_000

    report = validate_load(read_rows(synthetic), *WINDOW)
    assert not report.blocked
    assert report.quarantined_rows == 0
    assert set(report.results["status"]) <= {"pass", "info"}


def test_a_synthesis_reuses_a_matching_folder(shared_monthly: Path, tmp_path: Path):
    def recipe(rows: int, end: str):
        return synthesize(
            shared_monthly, tmp_path / "s", rows, start="2020-01", end=end, reuse=True
        )

    first = recipe(500, "2020-12")
    stamp = (first.folder / "resale-flat-prices-2020-01.csv").stat().st_mtime_ns
    again = recipe(500, "2020-12")
    assert again.files == first.files and len(again.files) == 12
    assert (first.folder / "resale-flat-prices-2020-01.csv").stat().st_mtime_ns == stamp
    (first.folder / "resale-flat-prices-2020-05.csv").unlink()
    assert len(recipe(500, "2020-12").files) == 12  # a month missing: written again
    assert (first.folder / "resale-flat-prices-2020-05.csv").is_file()
    recipe(600, "2020-06")
    assert len(list(first.folder.glob("*.csv"))) == 6  # a new synthesis leaves no stale month


def test_too_few_rows_for_the_window_is_refused(shared_monthly: Path, tmp_path: Path):
    with pytest.raises(SynthesisError, match="cannot fill 432 months"):
        synthesize(shared_monthly, tmp_path, 100)


def test_cli_writes_the_synthesis(shared_monthly: Path, tmp_path: Path, capsys):
    code = cli(
        [
            "synthesize",
            "--rows",
            "24",
            "--out",
            str(tmp_path / "cli"),
            "--start",
            "2010-01",
            "--end",
            "2010-12",
            "--source",
            str(shared_monthly),
        ]
    )
    assert code == 0
    assert "Wrote 24 rows in 12 monthly deliveries (2010-01..2010-12, seed 0)" in (
        capsys.readouterr().out
    )
    assert len(read_rows(tmp_path / "cli")) == 24
