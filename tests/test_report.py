"""Tests of the report stage (hdb_elt.report) on a small hand-made warehouse with marts."""

from __future__ import annotations

import math
import re
import struct
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from matplotlib.figure import Figure

from hdb_elt import report
from hdb_elt.report import (
    CHARTS,
    ReportError,
    attribution,
    chart_price_by_flat_type,
    chart_price_per_sqm_by_town,
    chart_transactions_per_month,
    format_change,
    format_sgd,
    price_per_sqm_matrix,
    read_report_data,
    report_dir,
    save_report,
    summary_markdown,
    window_label,
)

# (month_key, town, flat_type, resale_price, price_per_sqm): eight sales in 2023-01..2023-04,
# none in March, and one in 2022-12 that every window below leaves out.
SALES = [
    ("2022-12", "QUEENSTOWN", "4 ROOM", 900_000, 9_000),
    ("2023-01", "ANG MO KIO", "3 ROOM", 300_000, 4_000),
    ("2023-01", "ANG MO KIO", "4 ROOM", 500_000, 5_000),
    ("2023-01", "BISHAN", "4 ROOM", 600_000, 6_500),
    ("2023-02", "ANG MO KIO", "4 ROOM", 520_000, 5_200),
    ("2023-02", "BISHAN", "5 ROOM", 800_000, 7_000),
    ("2023-02", "BISHAN", "4 ROOM", 640_000, 7_200),
    ("2023-02", "BISHAN", "4 ROOM", 660_000, 7_900),
    ("2023-04", "BEDOK", "EXECUTIVE", 700_000, 4_500),
]
REGIONS = {
    "ANG MO KIO": "North-East",
    "BISHAN": "Central",
    "BEDOK": "East",
    "QUEENSTOWN": "Central",
}
# Inserted out of order: the report must follow sort_order, not the name or the insert order.
FLAT_TYPES = [("EXECUTIVE", 6), ("3 ROOM", 3), ("5 ROOM", 5), ("1 ROOM", 1), ("4 ROOM", 4)]
WINDOW = ("2023-01", "2023-04")


def build_marts(path: Path, sales=SALES) -> Path:
    """A warehouse holding only the marts' columns the report reads."""
    with duckdb.connect(str(path)) as con:
        con.execute("create schema marts")
        con.execute(
            """create table marts.fct_resale_transactions (
                transaction_id varchar, month date, month_key varchar, town varchar,
                flat_type varchar, floor_area_sqm decimal(6, 2), resale_price decimal(12, 2),
                price_per_sqm decimal(10, 2))"""
        )
        for i, (month, town, flat_type, price, per_sqm) in enumerate(sales):
            con.execute(
                "insert into marts.fct_resale_transactions values "
                "(?, cast(? || '-01' as date), ?, ?, ?, round(? / ?, 2), ?, ?)",
                [f"t{i}", month, month, town, flat_type, price, per_sqm, price, per_sqm],
            )
        con.execute("create table marts.dim_town (town varchar, region varchar)")
        con.executemany("insert into marts.dim_town values (?, ?)", list(REGIONS.items()))
        con.execute(
            "create table marts.dim_flat_type (flat_type varchar, sort_order integer, "
            "description varchar)"
        )
        con.executemany("insert into marts.dim_flat_type values (?, ?, '')", FLAT_TYPES)
    return path


@pytest.fixture
def warehouse_file(tmp_path: Path) -> Path:
    folder = tmp_path / "warehouse"
    folder.mkdir()
    return build_marts(folder / "hdb_resale.duckdb")


@pytest.fixture
def data(warehouse_file: Path) -> report.ReportData:
    return read_report_data(warehouse_file, *WINDOW)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def in_window(month: str) -> bool:
    return WINDOW[0] <= month <= WINDOW[1]


# ---------------------------------------------------------------- the aggregations


def test_median_price_per_sqm_per_town_and_month_is_computed_from_the_sales(data) -> None:
    expected = {}
    for month, town, _, _, per_sqm in SALES:
        if in_window(month):
            expected.setdefault((month, town), []).append(per_sqm)
    got = {
        (row.month_key, row.town): (row.median_price_per_sqm, row.transactions)
        for row in data.town_months.itertuples()
    }
    assert got == {key: (median(values), len(values)) for key, values in expected.items()}
    # By hand: Ang Mo Kio in January has 4,000 and 5,000; Bishan in February three sales.
    assert got[("2023-01", "ANG MO KIO")] == (4_500, 2)
    assert got[("2023-02", "BISHAN")] == (7_200, 3)


def test_towns_are_ranked_by_their_median_over_the_whole_window(data) -> None:
    towns = data.towns
    assert list(towns["town"]) == ["BISHAN", "ANG MO KIO", "BEDOK"]  # Queenstown is outside
    assert list(towns["median_price_per_sqm"]) == [7_100, 5_000, 4_500]
    assert list(towns["transactions"]) == [4, 3, 1]
    assert list(towns["region"]) == ["Central", "North-East", "East"]
    assert list(towns["share"]) == [0.5, 0.375, 0.125]


def test_the_heatmap_matrix_has_every_month_of_the_window_and_gaps_for_no_sales(data) -> None:
    matrix = price_per_sqm_matrix(data)
    assert list(matrix.index) == ["BISHAN", "ANG MO KIO", "BEDOK"]
    assert list(matrix.columns) == ["2023-01", "2023-02", "2023-03", "2023-04"]
    assert matrix.loc["ANG MO KIO", "2023-02"] == 5_200
    assert matrix["2023-03"].isna().all()  # no sales at all in March
    assert math.isnan(matrix.loc["BEDOK", "2023-01"])


def test_price_distribution_by_flat_type_follows_the_display_order(data) -> None:
    stats = data.flat_types.set_index("flat_type")
    assert list(stats.index) == ["3 ROOM", "4 ROOM", "5 ROOM", "EXECUTIVE"]
    four = stats.loc["4 ROOM"]  # 500k, 520k, 600k, 640k, 660k
    assert four.transactions == 5 and four.share == 5 / 8
    assert (four.p5, four.q1, four.median_price, four.q3, four.p95) == (
        504_000,  # 500k + 0.2 of the way to 520k (linear interpolation, as numpy's default)
        520_000,
        600_000,
        640_000,
        656_000,
    )
    assert stats.loc["EXECUTIVE", "median_price"] == 700_000


def test_a_flat_type_missing_from_the_dimension_comes_last(tmp_path: Path) -> None:
    # "2-ROOM FLEXI" sorts first by name: last place proves the dimension's order is used.
    path = build_marts(
        tmp_path / "w.duckdb", [*SALES, ("2023-01", "BEDOK", "2-ROOM FLEXI", 200_000, 5_000)]
    )
    data = read_report_data(path, *WINDOW)
    assert list(data.flat_types["flat_type"])[-1] == "2-ROOM FLEXI"
    assert data.towns.set_index("town").loc["BEDOK", "transactions"] == 2


def test_every_sale_of_a_rare_flat_type_is_kept_for_the_chart(
    warehouse_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "FEW_SALES", 2)  # types with a single sale in the window
    data = read_report_data(warehouse_file, *WINDOW)
    assert data.few_sales.values.tolist() == [
        ["3 ROOM", 300_000],
        ["5 ROOM", 800_000],
        ["EXECUTIVE", 700_000],
    ]


def test_transactions_per_month_by_flat_type_and_the_monthly_medians(data) -> None:
    counts = {
        (r.month_key, r.flat_type): r.transactions for r in data.month_flat_types.itertuples()
    }
    assert counts == {
        ("2023-01", "3 ROOM"): 1,
        ("2023-01", "4 ROOM"): 2,
        ("2023-02", "4 ROOM"): 3,
        ("2023-02", "5 ROOM"): 1,
        ("2023-04", "EXECUTIVE"): 1,
    }
    assert data.months.values.tolist() == [
        ["2023-01", 3, 500_000],
        ["2023-02", 4, 650_000],  # (640k + 660k) / 2
        ["2023-04", 1, 700_000],
    ]
    assert data.transactions == 8
    assert data.median_price == 620_000  # (600k + 640k) / 2


def test_the_stacked_bars_add_up_to_each_months_sales(data) -> None:
    fig = chart_transactions_per_month(data)
    ax = fig.axes[0]
    totals = [0.0] * 4  # one bar per month of the window, March empty
    for bar in ax.patches:
        totals[round(bar.get_x() + bar.get_width() / 2)] += bar.get_height()
    assert totals == [3, 4, 0, 1]
    on_bars = [t.get_text() for t in ax.texts if t.get_transform() == ax.transData]
    assert on_bars == ["3", "4", "1"]


def test_charts_say_what_they_show(data) -> None:
    by_town = chart_price_per_sqm_by_town(data)
    assert by_town.axes[0].get_title(loc="left") == (
        "Median resale price per square metre by town, Jan\u2013Apr 2023"
    )
    assert [t.get_text() for t in by_town.axes[0].get_yticklabels()] == [
        "Bishan",
        "Ang Mo Kio",
        "Bedok",
    ]
    colour_bar = by_town.axes[-1]
    assert colour_bar.get_xlabel() == "Median price per sqm (SGD)"
    assert colour_bar.xaxis.get_major_formatter()(7_100, 0) == "7,100"

    by_type = chart_price_by_flat_type(data)
    ax = by_type.axes[0]
    assert ax.get_xlabel() == "Resale price (SGD)"
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "3-room\n1 sale",
        "4-room\n5 sales",
        "5-room\n1 sale",
        "Executive\n1 sale",
    ]
    formatter = ax.xaxis.get_major_formatter()
    assert formatter(650_000, 0) == "650,000"

    per_month = chart_transactions_per_month(data)
    assert per_month.axes[0].get_ylabel() == "Transactions (sales registered)"
    assert "Jan\u2013Apr 2023" in per_month.axes[0].get_title(loc="left")


# ---------------------------------------------------------------- the summary


def test_summary_states_the_hand_computed_numbers(data) -> None:
    text = summary_markdown(data)
    assert text.startswith("### HDB resale flats, Jan\u2013Apr 2023\n")
    for phrase in [
        "**8 resale transactions** were registered in Jan\u2013Apr 2023, in 3 towns.",
        "The marts hold sales for 3 of the window's 4 months (Jan\u2013Apr 2023).",
        "The **median resale price** was S$ 620,000.",
        "moved from S$ 500,000 in Jan 2023 to S$ 700,000 in Apr 2023 (+40.0%).",
        "**Bishan** was the most expensive town (S$ 7,100 per sqm, 4 sales)",
        "**Bedok** the least (S$ 4,500 per sqm, 1 sale).",
        "**Bishan** was the busiest town, with 4 sales (50.0% of the total).",
        "**4-room** flats made up 62.5% of sales, 3-room 12.5% and 5-room 12.5%.",
    ]:
        assert phrase.replace("S$", "S\\$") in text, phrase
    assert "Queenstown" not in text
    assert re.search(r"(?<!\\)\$", text) is None, "a $ that JupyterLab would read as maths"
    assert text.endswith(
        "\n\n*Window 2023-01..2023-04, from `marts.fct_resale_transactions`. Contains "
        'information from "Resale flat prices based on registration date from Jan-2017 onwards" '
        "accessed from data.gov.sg, under the Singapore Open Data Licence version 1.0.*\n"
    )


def test_summary_of_a_single_month_has_no_movement(warehouse_file: Path) -> None:
    text = summary_markdown(read_report_data(warehouse_file, "2023-02", "2023-02"))
    assert "**4 resale transactions** were registered in Feb 2023, in 2 towns." in text
    assert "The **median resale price** was S\\$ 650,000.\n" in text
    assert "moved" not in text and "hold sales for" not in text
    assert "**Bishan** was the busiest town, with 3 sales (75.0% of the total)." in text


def test_an_empty_window_gets_a_plain_message_and_placeholder_charts(
    warehouse_file: Path,
) -> None:
    data = read_report_data(warehouse_file, "2030-01", "2030-03")
    assert data.empty and data.transactions == 0 and data.median_price is None
    assert data.describe() == "2030-01..2030-03: no sales in the marts."
    text = summary_markdown(data)
    assert text.startswith("**No resale transactions in the marts for Jan\u2013Mar 2030")
    assert "make run HDB_START_MONTH=2030-01 HDB_END_MONTH=2030-03" in text
    for draw in CHARTS.values():
        fig = draw(data)
        assert "No sales in the marts for this window." in [t.get_text() for t in fig.axes[0].texts]
    written = save_all(data, warehouse_file.parent / "report")
    assert (warehouse_file.parent / "report" / "summary.md").read_text() == text
    assert len(written) == 4


def test_numbers_and_windows_are_formatted_for_people() -> None:
    assert format_sgd(560_000) == "S$ 560,000"
    assert format_sgd(1_234_567.5) == "S$ 1,234,568"
    assert format_change(500_000, 516_000) == "+3.2%"
    assert format_change(500_000, 496_000) == "-0.8%"
    assert format_change(500_000, 500_010) == "+0.0%"
    assert format_change(500_000, 499_990) == "+0.0%"  # not "-0.0%"
    assert window_label("2023-01", "2023-12") == "Jan\u2013Dec 2023"
    assert window_label("2022-11", "2023-02") == "Nov 2022 \u2013 Feb 2023"
    assert window_label("2023-03", "2023-03") == "Mar 2023"


# ---------------------------------------------------------------- files and the warehouse


def save_all(data, directory: Path) -> list[Path]:
    """Every chart and the summary, saved as notebook 05 saves them."""
    charts = {name: draw(data) for name, draw in CHARTS.items()}
    return save_report(directory, charts, summary_markdown(data))


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    assert header[12:16] == b"IHDR"
    return struct.unpack(">II", header[16:24])


def test_the_report_is_saved_beside_the_warehouse(warehouse_file: Path, data) -> None:
    directory = report_dir(warehouse_file)
    assert directory == warehouse_file.parent / "report"
    assert not directory.exists()
    written = save_all(data, directory)
    assert [p.name for p in written] == [
        "median_price_per_sqm_by_town.png",
        "price_by_flat_type.png",
        "transactions_per_month.png",
        "summary.md",
    ]
    assert sorted(p.name for p in directory.iterdir()) == sorted(p.name for p in written)
    for path in written[:3]:
        width, height = png_size(path)
        assert 1_000 <= width <= 2_500 and 500 <= height <= 2_500, (path.name, width, height)
        assert path.stat().st_size > 20_000, path.name  # drawn, not blank
    assert (directory / "summary.md").read_text(encoding="utf-8") == summary_markdown(data)


def test_save_report_writes_the_figures_it_is_given(tmp_path: Path) -> None:
    fig = Figure(figsize=(4, 3))
    fig.add_subplot().plot([1, 2, 3])
    written = save_report(tmp_path / "out" / "report", {"chart.png": fig}, "# hello\n")
    assert [p.name for p in written] == ["chart.png", "summary.md"]
    assert png_size(written[0]) == (600, 450)  # 4 x 3 inches at 150 dpi
    assert written[1].read_text() == "# hello\n"


def test_reading_closes_the_warehouse_so_another_process_can_write(
    warehouse_file: Path, data
) -> None:
    # A connection left open (even read-only) would hold DuckDB's file lock.
    code = (
        "import duckdb, sys\n"
        "con = duckdb.connect(sys.argv[1])\n"
        "con.execute('create table marts.written_after_the_report as select 1 as x')\n"
        "con.close()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(warehouse_file)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    with duckdb.connect(str(warehouse_file)) as con:  # and this process too, read-write
        assert con.execute("select x from marts.written_after_the_report").fetchone() == (1,)


def test_a_warehouse_without_marts_says_to_run_the_transform_first(tmp_path: Path) -> None:
    path = tmp_path / "empty.duckdb"
    duckdb.connect(str(path)).close()
    with pytest.raises(ReportError, match="transform stage first"):
        read_report_data(path, *WINDOW)
    with duckdb.connect(str(path)) as con:  # closed after the failure too
        con.execute("create table t (x integer)")


def test_a_missing_warehouse_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "w.duckdb"
    with pytest.raises(FileNotFoundError, match="does not exist yet"):
        read_report_data(path, *WINDOW)
    assert not path.parent.exists()


def test_the_licence_notice_names_every_resource_of_the_window() -> None:
    assert attribution("2023-01", "2023-12") == (
        'Contains information from "Resale flat prices based on registration date from Jan-2017 '
        'onwards" accessed from data.gov.sg, under the Singapore Open Data Licence version 1.0.'
    )
    history = attribution("1990-01", "2023-12")
    assert history.count('" and "') == 4
    assert '"Resale flat prices based on approval date, 1990 - 1999"' in history
