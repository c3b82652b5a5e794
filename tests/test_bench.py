"""The benchmark: its DuckDB floor builds what dbt builds, and ``python -m bench --quick``
writes the results it promises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from dbt_support import dbt, load_deliveries

from hdb_elt.settings import REPO_ROOT
from hdb_elt.stage_notebooks import STAGE_NAMES as STAGES
from hdb_elt.synthetic import synthesize

# bench/ is the repository's benchmark scripts, run as `python -m bench` from its root, not an
# installed package.
sys.path.insert(0, str(REPO_ROOT))
from bench.extract_load import FLOOR, OURS
from bench.extract_load import table as el_table
from bench.floor import run_floor
from bench.summary import fit, markdown, slopes, targets

SAMPLE = REPO_ROOT / "bench" / "results" / "sample"


def fact_by_month(database: Path, fact: str, agg: str) -> tuple[list, list, set]:
    """Per month (rows, total price, distinct ids), the aggregate table, and every id."""
    with duckdb.connect(str(database), read_only=True) as con:
        months = con.execute(
            f"select month_key, count(*), sum(resale_price), count(distinct transaction_id) "
            f"from {fact} group by all order by month_key"
        ).fetchall()
        aggregate = con.execute(
            "select month_key, town, flat_type, transactions, median_price, mean_price, "
            f"median_price_per_sqm, min_price, max_price from {agg} order by all"
        ).fetchall()
        ids = {row[0] for row in con.execute(f"select transaction_id from {fact}").fetchall()}
    return months, aggregate, ids


@pytest.mark.slow
def test_the_floor_builds_the_marts_dbt_builds(shared_monthly: Path, tmp_path: Path) -> None:
    # Two reference months (2023-03 holds identical twins) and a year of synthetic rows.
    synthetic = synthesize(
        shared_monthly, tmp_path / "synthetic", 600, start="2020-01", end="2020-12"
    )
    files = [*synthetic.files, *sorted(shared_monthly.glob("*2023-0[34].csv"))]
    warehouse = tmp_path / "warehouse.duckdb"
    load_deliveries(warehouse, files)
    code, output, _ = dbt(
        ["build", "--exclude-resource-type", "unit_test"], warehouse, tmp_path / "target"
    )
    assert code == 0, output[-3000:]

    floor = run_floor(files, tmp_path / "floor.duckdb", "2020-01", "2023-04")

    built = fact_by_month(
        warehouse, "marts.fct_resale_transactions", "marts.agg_monthly_town_prices"
    )
    ours = fact_by_month(
        tmp_path / "floor.duckdb", "fct_resale_transactions", "agg_monthly_town_prices"
    )
    assert floor["fact_rows"] == sum(row[1] for row in built[0]) > 4_000
    assert ours[0] == built[0]  # rows, total price and distinct ids per month
    assert ours[1] == built[1]  # the monthly aggregate, every column
    assert ours[2] == built[2]  # the same transaction ids
    assert set(floor["test_failures"].values()) == {0}
    assert floor["rule_failures"]["identical_rows"] > 0  # 2023-03 and 04 hold identical twins
    assert {
        k: v
        for k, v in floor["rule_failures"].items()
        if k not in ("rows_checked", "identical_rows")
    } == dict.fromkeys(
        [
            "types_parse",
            "month_format",
            "month_in_window",
            "flat_type_known",
            "storey_range_format",
            "floor_area_plausible",
            "resale_price_plausible",
            "lease_year_plausible",
            "remaining_lease_format",
            "no_control_characters",
            "town_known",
            "identical_rows_share",
        ],
        0,
    )
    for stage in STAGES:
        assert floor[stage]["seconds"] >= 0 and floor[stage]["peak_rss_mib"] > 0


def test_fit_finds_a_linear_slope() -> None:
    line = fit([100_000, 300_000, 1_000_000], [12.0, 32.0, 102.0])
    assert line["per_million_rows_s"] == pytest.approx(100.0)
    assert line["fixed_s"] == pytest.approx(2.0)
    assert 0.9 < line["exponent"] < 1.0  # the fixed 2 s still weigh at 0.1M rows


def test_the_committed_sample_reads_the_same_from_its_figures() -> None:
    """The sample's slope, targets and Markdown table are what its figures give today (the
    notes left out: the sample was measured before a module they name was renamed)."""
    result = json.loads(SAMPLE.with_suffix(".json").read_text())
    assert slopes(result["points"]) == result["slope"]
    recomputed = targets(
        {p["name"]: p for p in result["points"]}, result["dagster"], result["slope"]
    )
    assert [{**t, "note": None} for t in recomputed] == [
        {**t, "note": None} for t in result["targets"]
    ]
    assert markdown(result) == SAMPLE.with_suffix(".md").read_text()


def test_a_path_landing_fewer_rows_is_marked_as_losing_them() -> None:
    comparison = {
        "window": "1990-01..2025-12",
        "rows": 1_000_000,
        "paths": {
            FLOOR: {"median_s": 2.0, "ratio_to_floor": 1.0, "rows": 1_000_000, "lost_rows": 0},
            "peer": {"median_s": 4.0, "ratio_to_floor": 2.0, "rows": 999_990, "lost_rows": 10},
        },
    }
    lines = el_table(comparison).splitlines()
    assert lines[-2].endswith("| 1.0x | 1,000,000 |")
    assert lines[-1] == "| peer | 4.00 | 2.0x | 999,990 (loses 10 of 1,000,000) |"


@pytest.mark.slow
def test_quick_benchmark_writes_its_table_and_json(shared_monthly: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--points", "one_month", "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [written] = tmp_path.glob("*-quick.json")
    result = json.loads(written.read_text())
    assert set(result) == {
        "meta",
        "start_up",
        "points",
        "dagster",
        "extract_load_paths",
        "slope",
        "targets",
    }
    paths = result["extract_load_paths"]["one_month"]["paths"]
    assert set(paths) == {FLOOR, OURS}  # --quick leaves the peers out
    assert {p["rows"] for p in paths.values()} == {result["points"][0]["rows"]}
    assert paths[FLOOR]["ratio_to_floor"] == 1.0 and paths[OURS]["ratio_to_floor"] > 0
    assert result["meta"]["quick"] is True and result["meta"]["repeat"] == 1
    assert len(result["meta"]["loadavg_start"]) == 3 and len(result["meta"]["loadavg_end"]) == 3
    [point] = result["points"]
    assert point["name"] == "one_month" and point["rows"] > 1_000
    assert point["pipeline"]["path"].startswith("papermill")
    for stage in STAGES:
        figures = point["pipeline"]["stages"][stage]
        assert set(figures["seconds"]) == {"min", "median", "max", "n"}
        assert figures["seconds"]["min"] > 0 and figures["peak_rss_mib"] > 0
        assert point["floor"]["stages"][stage]["seconds"]["median"] >= 0
        assert point["ratios"][stage] > 0
    assert len(point["loadavg"]) == 3
    assert result["dagster"]["one_month"]["runs"] == 1
    assert result["dagster"]["one_month"]["wall_s"]["median"] > 0
    assert {t["target"] for t in result["targets"]} >= {
        "one month end to end through Dagster",
        "1M rows through the whole pipeline",
    }
    table = written.with_suffix(".md").read_text()
    assert "| point | rows | stage |" in table and "## Targets" in table
    assert "Load average" in table
    assert "| one month (2023-06) |" in done.stdout
