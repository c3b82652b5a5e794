"""The report's long run (hdb_elt.long_run) on a small hand-made warehouse spanning 34 years."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import pytest

from hdb_elt.chart_style import month_ticks
from hdb_elt.long_run import (
    ALL,
    CHART_FILE,
    chart_long_run,
    long_run_sentence,
    read_long_run,
)
from hdb_elt.report import ReportError, read_report_data, save_report, summary_markdown

# (month_key, town, price per sqm); every flat is 100 sqm, so the price is 100 times that.
SALES = [
    ("1990-01", "ANG MO KIO", 800),
    ("1990-06", "ANG MO KIO", 1_000),
    ("1990-03", "BISHAN", 1_200),
    ("1990-07", "WOODLANDS", 600),
    ("1997-05", "BISHAN", 3_000),
    ("2023-01", "ANG MO KIO", 5_000),
    ("2023-02", "ANG MO KIO", 6_000),
    ("2023-03", "BISHAN", 9_000),
    ("2023-04", "WOODLANDS", 4_800),
    ("2023-05", "TENGAH", 5_200),
    ("2024-01", "BISHAN", 99_000),  # after every window below
]
REGIONS = {
    "ANG MO KIO": "North-East",
    "BISHAN": "Central",
    "WOODLANDS": "North",
    "TENGAH": "West",
}
HISTORY = ("1990-01", "2023-12")


def build_marts(path: Path, sales=SALES, with_region: bool = True) -> Path:
    with duckdb.connect(str(path)) as con:
        con.execute("create schema marts")
        con.execute(
            """create table marts.fct_resale_transactions (
                transaction_id varchar, month date, month_key varchar, town varchar,
                flat_type varchar, floor_area_sqm decimal(6, 2), resale_price decimal(12, 2),
                price_per_sqm decimal(10, 2))"""
        )
        for i, (month, town, per_sqm) in enumerate(sales):
            con.execute(
                "insert into marts.fct_resale_transactions values "
                "(?, cast(? || '-01' as date), ?, ?, '4 ROOM', 100, ?, ?)",
                [f"t{i}", month, month, town, per_sqm * 100, per_sqm],
            )
        if with_region:
            con.execute("create table marts.dim_town (town varchar, region varchar)")
            con.executemany("insert into marts.dim_town values (?, ?)", list(REGIONS.items()))
        else:
            con.execute("create table marts.dim_town (town varchar)")
            con.executemany("insert into marts.dim_town values (?)", [[t] for t in REGIONS])
        con.execute(
            "create table marts.dim_flat_type (flat_type varchar, sort_order integer, "
            "description varchar)"
        )
        con.execute("insert into marts.dim_flat_type values ('4 ROOM', 4, '')")
    return path


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    return build_marts(tmp_path / "w.duckdb")


def test_medians_by_year_and_region_are_those_of_the_sales(warehouse: Path) -> None:
    run = read_long_run(warehouse, *HISTORY)
    assert run.period == "year"
    overall = run.overall.set_index("period")
    # 1990: 600, 800, 1,000, 1,200 -> 900; 1997: one sale; 2023: five sales -> 5,200.
    assert overall["median_price_per_sqm"].to_dict() == {"1990": 900, "1997": 3_000, "2023": 5_200}
    assert overall["transactions"].to_dict() == {"1990": 4, "1997": 1, "2023": 5}
    assert overall["index"].to_dict() == {"1990": 100.0, "1997": 333.3, "2023": 577.8}
    matrix = run.region_matrix()
    assert list(matrix.columns) == ["Central", "North", "North-East", "West"]
    assert matrix.loc["1990", "North-East"] == 900  # 800 and 1,000
    assert matrix.loc["2023", "North-East"] == 5_500  # 5,000 and 6,000
    assert matrix.loc["2023", "Central"] == 9_000
    assert math.isnan(matrix.loc["1990", "West"])  # Tengah had no sales in 1990
    # Every year from the first to the last with sales, so a gap shows as a gap.
    assert run.periods == [str(y) for y in range(1990, 2024)]
    assert matrix.loc["2005"].isna().all()
    index = run.region_matrix("index")
    assert index.loc["2023", "North"] == 800.0  # 600 -> 4,800
    assert index.loc["2023", "West"] == 100.0  # the region's own first year


def test_the_sentence_gives_the_rise_and_the_regions_that_rose_most_and_least(
    warehouse: Path,
) -> None:
    sentence = long_run_sentence(read_long_run(warehouse, *HISTORY))
    # 900 -> 5,200 is 5.78-fold; over 33 years, 5.78 ** (1 / 33) - 1 = 5.5% a year. By region
    # (West left out: no sale in 1990): North-East 6.1-fold, Central 7.5, North 8.0.
    assert sentence == (
        "The median price per sqm rose from S\\$ 900 in 1990 to S\\$ 5,200 in 2023, 5.8-fold "
        "(+5.5% a year); by region, from 6.1-fold in North-East to 8.0-fold in North."
    )


def test_a_fall_is_called_a_fall(tmp_path: Path) -> None:
    sales = [("1996-01", "BISHAN", 4_000), ("1996-02", "ANG MO KIO", 2_000),
             ("1999-01", "BISHAN", 3_000), ("1999-02", "ANG MO KIO", 1_600)]  # fmt: skip
    run = read_long_run(build_marts(tmp_path / "w.duckdb", sales), "1996-01", "1999-12")
    assert long_run_sentence(run) == (
        "The median price per sqm fell from S\\$ 3,000 in 1996 to S\\$ 2,300 in 1999, -23.3% "
        "(-8.5% a year); by region, from -25.0% in Central to -20.0% in North-East."
    )


def test_regions_that_moved_alike_are_said_to(tmp_path: Path) -> None:
    sales = [("2000-01", "BISHAN", 2_000), ("2000-02", "ANG MO KIO", 1_000),
             ("2010-01", "BISHAN", 6_000), ("2010-02", "ANG MO KIO", 3_000)]  # fmt: skip
    run = read_long_run(build_marts(tmp_path / "w.duckdb", sales), "2000-01", "2010-12")
    assert long_run_sentence(run).endswith("(+11.6% a year); alike in every region (3.0-fold).")


def test_one_year_is_shown_month_by_month_and_said_to_be_too_short(warehouse: Path) -> None:
    assert read_long_run(warehouse, "2023-01", "2023-12").period == "month"
    # The whole history's window over marts holding only 2023: months again, 2023's only.
    only_2023 = [s for s in SALES if s[0].startswith("2023")]
    path = build_marts(warehouse.parent / "only2023.duckdb", only_2023)
    run = read_long_run(path, *HISTORY)
    assert run.period == "month"
    assert run.periods == ["2023-01", "2023-02", "2023-03", "2023-04", "2023-05"]
    sentence = long_run_sentence(run)
    assert "too short for a long-run trend" in sentence
    assert "from S\\$ 5,000 in Jan 2023 to S\\$ 5,200 in May 2023 (+4.0%)" in sentence
    assert "HDB_START_MONTH=1990-01 make data" in sentence


def test_an_empty_window_says_so(warehouse: Path) -> None:
    run = read_long_run(warehouse, "2030-01", "2030-12")
    assert run.empty
    assert long_run_sentence(run).startswith("No sales in the marts for Jan\u2013Dec 2030")
    assert not chart_long_run(run).axes[0].lines


def test_without_a_region_column_the_error_names_it(tmp_path: Path) -> None:
    path = build_marts(tmp_path / "w.duckdb", with_region=False)
    with pytest.raises(ReportError, match=r"marts\.dim_town has no column region"):
        read_long_run(path, *HISTORY)


def test_without_marts_the_error_says_what_to_run(tmp_path: Path) -> None:
    duckdb.connect(str(tmp_path / "empty.duckdb")).close()
    with pytest.raises(ReportError, match="run the transform stage first"):
        read_long_run(tmp_path / "empty.duckdb", *HISTORY)


def test_the_chart_draws_each_region_and_all_singapore_over_the_years(warehouse: Path) -> None:
    run = read_long_run(warehouse, *HISTORY)
    fig = chart_long_run(run)
    ax = fig.axes[0]
    lines = {line.get_label(): line.get_ydata() for line in ax.lines}
    assert list(lines) == ["Central", "North", "North-East", "West", ALL]
    assert len(lines[ALL]) == 34
    assert lines[ALL][0] == 900 and lines[ALL][7] == 3_000 and lines[ALL][-1] == 5_200
    assert math.isnan(lines[ALL][1])  # 1991: no sales, a gap rather than a made-up point
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "1990", "1995", "2000", "2005", "2010", "2015", "2020"
    ]  # fmt: skip
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "approved" in texts and "registered" in texts  # the window spans March 2012
    assert "index (1990 = 100)" in ax.child_axes[0].get_ylabel()


def test_the_chart_of_one_year_has_months_and_no_approval_note(warehouse: Path) -> None:
    fig = chart_long_run(read_long_run(warehouse, "2023-01", "2023-12"))
    ax = fig.axes[0]
    assert len(next(line for line in ax.lines if line.get_label() == ALL).get_ydata()) == 5
    assert ax.get_xticklabels()[0].get_text() == "Jan\n2023"
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "too short for a long run" in texts and "approved" not in texts


def test_the_sentence_joins_the_summary_and_the_chart_is_saved(
    warehouse: Path, tmp_path: Path
) -> None:
    run = read_long_run(warehouse, *HISTORY)
    summary = summary_markdown(read_report_data(warehouse, *HISTORY), [long_run_sentence(run)])
    assert "\n- The median price per sqm rose from S\\$ 900 in 1990" in summary
    assert summary.index("rose from") < summary.index("*Window")
    written = save_report(tmp_path / "report", {CHART_FILE: chart_long_run(run)}, summary)
    assert (tmp_path / "report" / CHART_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(written) == 2


def test_month_ticks_of_35_years_are_years() -> None:
    months = [f"{y}-{m:02d}" for y in range(1990, 2024) for m in range(1, 13)]
    positions, labels = month_ticks(months)
    assert labels == ["1990", "1995", "2000", "2005", "2010", "2015", "2020"]
    assert positions == [0, 60, 120, 180, 240, 300, 360]
    assert month_ticks(months[:24])[1][:2] == ["Jan\n1990", "Mar"]  # two years: as before
