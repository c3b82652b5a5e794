"""The benchmark's synthetic deliveries: seeded, shaped like the real ones, and clean."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pandas as pd
import pytest
from tap_hdb_resale.deliveries import collect_months
from tap_hdb_resale.resources import resource_of

from classroom.cli import main as cli
from hdb_elt.months import Month
from hdb_elt.synthetic import (
    FILE_PREFIX,
    MANIFEST,
    SynthesisError,
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
    for path in synthetic.glob("*.csv"):
        text = path.read_text(encoding="utf-8")
        month = path.stem.removeprefix(FILE_PREFIX)
        # The columns of the month's resource: today's from 2015, without remaining_lease before.
        header = ",".join(resource_of(month).columns)
        assert text.splitlines()[0] == header
        assert (header == real_header) == (month >= "2015-01")
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


def test_prices_are_perturbed_but_plausible(tmp_path: Path):
    # One known row per calendar month, so every synthetic row can be traced to its source.
    source = tmp_path / "source"
    source.mkdir()
    for month in range(1, 13):
        (source / f"resale-flat-prices-2023-{month:02d}.csv").write_text(
            ",".join(SOURCE_COLUMNS) + "\n"
            f"2023-{month:02d},BEDOK,4 ROOM,1,BEDOK NTH RD,04 TO 06,92,Model A,1980,"
            "55 years 06 months,500000\n"
        )
    synthesize(source, tmp_path / "out", 2_000, start="1995-01", end="2000-12", seed=1)
    rows = read_rows(tmp_path / "out")
    prices = rows["resale_price"].astype(int)
    assert prices.between(450_000, 550_000).all()
    assert prices.nunique() > 1_900  # perturbed row by row, not copied
    assert 490_000 < prices.mean() < 510_000
    # The flat is 43 years old in 2023: in 1995 it is 43 * 35 / 63 = 24 years old.
    first = rows[rows["month"] == "1995-01"].iloc[0]
    assert first["lease_commence_date"] == "1971"
    assert "remaining_lease" not in rows  # the resources of 1995-2000 have none


def test_leases_fit_their_new_year(synthetic: Path):
    rows = read_rows(synthetic)
    year = rows["month"].str.slice(0, 4).astype(int)
    lease = rows["lease_commence_date"].astype(int)
    assert lease.between(1960, 2025).all() and (lease <= year).all()
    has_lease = rows["remaining_lease"].notna()  # from 2015, as the resources have it
    assert (has_lease == (rows["month"] >= "2015-01")).all()
    remaining = rows["remaining_lease"][has_lease].map(parse_remaining_lease)
    assert remaining.between(0, 99 * 12).all()
    # About 99 years minus the flat's age (the reference's months-into-the-lease kept).
    age_months = ((year - lease) * 12)[has_lease]
    assert ((99 * 12 - age_months) - remaining).abs().max() <= 24


def test_remaining_lease_words_match_the_reference():
    assert remaining_lease_text(61 * 12 + 4) == "61 years 04 months"
    assert remaining_lease_text(61 * 12 + 1) == "61 years 01 month"
    assert remaining_lease_text(61 * 12) == "61 years"
    assert parse_remaining_lease("61 years 01 month") == 61 * 12 + 1
    assert parse_remaining_lease("") is None


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
