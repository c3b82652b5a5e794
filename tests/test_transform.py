"""What the transform stage shows (hdb_elt.transform): the models a build made and the marts.

One real dbt build of three reference months (slow) backs the checks of ``built_models`` and
``mart_preview``; ``build_models``'s command and its failure message are checked with dbt
replaced by a stand-in. dbt writes into a private target folder (``DBT_TARGET_PATH``), so
these runs never share ``dbt_resale_flat/target`` with another.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
from dbt_support import dbt_settings, load_deliveries, shared_month_files

from hdb_elt import transform
from hdb_elt.months import Month

MONTHS = ("2023-01", "2023-02", "2023-03")
SEEDS = ("flat_model_spellings", "flat_models", "flat_types", "resources", "town_regions")
FLOW_ORDER = [
    *SEEDS,
    "stg_hdb__resale_flat_prices",
    "dim_flat_type",
    "dim_town",
    "fct_resale_transactions",
    "agg_monthly_town_prices",
]


def window_settings(warehouse: Path, start: str, end: str):
    return replace(
        dbt_settings(warehouse), start_month=Month.parse(start), end_month=Month.parse(end)
    )


def csv_rows(path: Path) -> int:
    with path.open(newline="", encoding="utf-8") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1


@pytest.fixture
def private_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "target"
    monkeypatch.setenv("DBT_TARGET_PATH", str(target))
    monkeypatch.setenv("DBT_LOG_PATH", str(tmp_path / "logs"))
    return target


# ---------------------------------------------------------------- quick checks, no dbt run


def write_results(target: Path, results: list[dict]) -> None:
    """A run_results.json as dbt writes it."""
    target.mkdir(parents=True, exist_ok=True)
    (target / "run_results.json").write_text(json.dumps({"metadata": {}, "results": results}))


def test_build_models_builds_the_window_without_tests(monkeypatch, private_target: Path) -> None:
    calls = []

    def fake_run_dbt(args, settings, *, capture=False, env=None):
        calls.append((args, env))
        write_results(
            Path(env["DBT_TARGET_PATH"]), [{"unique_id": "model.p.fct", "status": "success"}]
        )
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(transform, "run_dbt", fake_run_dbt)
    summary = transform.build_models(window_settings(Path("w.duckdb"), "2023-02", "2023-04"))
    assert summary == {"model": {"success": 1}}
    ((args, env),) = calls
    assert args[0] == "build" and "--vars" not in args  # the window in the environment
    assert (env["HDB_DBT_START_MONTH"], env["HDB_DBT_END_MONTH"]) == ("2023-02", "2023-04")
    excluded = {args[i + 1] for i, arg in enumerate(args) if arg == "--exclude-resource-type"}
    assert excluded == {"test", "unit_test"}


def test_build_models_names_the_failing_model_and_never_reads_another_runs_results(
    monkeypatch, private_target: Path
) -> None:
    old = [{"unique_id": "model.p.old", "status": "error", "message": "old failure"}]
    write_results(private_target, old)  # a run's outside the run folders
    write_results(transform.new_run_target(), old)  # an earlier run's
    behaviour = {"returncode": 2, "write": False}

    def fake_run_dbt(args, settings, *, capture=False, env=None):
        if behaviour["write"]:
            failed = {"unique_id": "model.p.fct", "status": "error", "message": "Binder Error"}
            write_results(Path(env["DBT_TARGET_PATH"]), [failed])
        output = "\x1b[31mdbt crashed while parsing\x1b[0m"
        return subprocess.CompletedProcess(args, behaviour["returncode"], output, "")

    monkeypatch.setattr(transform, "run_dbt", fake_run_dbt)
    settings = window_settings(Path("w.duckdb"), "2023-01", "2023-01")
    with pytest.raises(transform.TransformError) as crashed:
        transform.build_models(settings)
    assert "old failure" not in str(crashed.value)
    assert "dbt crashed while parsing" in str(crashed.value)  # without colour codes
    assert "\x1b" not in str(crashed.value)

    behaviour["returncode"] = 0
    with pytest.raises(transform.TransformError, match="results are missing"):
        transform.build_models(settings)

    behaviour.update(returncode=1, write=True)
    with pytest.raises(transform.TransformError) as failed:
        transform.build_models(settings)
    assert "model.p.fct: Binder Error" in str(failed.value)
    assert "2023-01..2023-01" in str(failed.value)


def test_each_dbt_run_gets_a_fresh_folder_with_the_last_parsed_project(tmp_path: Path) -> None:
    base = tmp_path / "target"
    assert transform.latest_run_target(base) is None
    (base).mkdir()
    (base / "partial_parse.msgpack").write_bytes(b"by hand")  # a `dbt build` run in the project
    first = transform.new_run_target(base)
    assert first.parent == base / "runs" and first.is_dir()
    assert (first / "partial_parse.msgpack").read_bytes() == b"by hand"
    assert transform.latest_run_target(base) is None  # no results in it yet
    write_results(first, [])
    (first / "partial_parse.msgpack").write_bytes(b"first run")
    os.utime(base / "partial_parse.msgpack", (1, 1))  # older than the first run's

    folders = [first] + [transform.new_run_target(base) for _ in range(transform.KEEP_RUN_TARGETS)]
    assert len(set(folders)) == len(folders)
    assert (folders[1] / "partial_parse.msgpack").read_bytes() == b"first run"
    # A folder of the last hour is kept beyond the latest few: a concurrent run may read it.
    assert transform.run_targets(base) == folders
    hours_ago = time.time() - 2 * transform.KEEP_RECENT_SECONDS
    for folder in folders[:2]:
        os.utime(folder, (hours_ago, hours_ago))
    folders.append(transform.new_run_target(base))
    assert transform.run_targets(base) == folders[2:]  # the old ones removed, the latest few kept
    assert transform.latest_run_target(base) is None  # the first, with results, is gone
    write_results(folders[3], [])
    assert transform.latest_run_target(base) == folders[3]


def test_describe_summary_reads_like_a_sentence() -> None:
    summary = {
        "seed": {"success": 2},
        "model": {"success": 4, "error": 1},
        "operation": {"success": 1},
    }
    assert transform.describe_summary(summary) == (
        "5 models (1 error, 4 success); 1 operation (1 success); 2 seeds (2 success)"
    )


def test_built_models_says_to_run_dbt_first(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run dbt first"):
        transform.built_models(tmp_path / "w.duckdb", "2023-01", "2023-01", tmp_path)


def test_mart_preview_accepts_only_the_marts(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expected one of fct_resale_transactions"):
        transform.mart_preview(tmp_path / "w.duckdb", "2023-01", "2023-01", mart="raw; drop")


# ---------------------------------------------------------------- slow: one real dbt build


@pytest.fixture(scope="module")
def small_build(tmp_path_factory) -> dict:
    """Three reference months loaded and built (seeds and models, no tests) once."""
    files = shared_month_files()[:3]
    if not files:
        pytest.skip("the shared reference deliveries are not on this machine")
    root = tmp_path_factory.mktemp("transform")
    warehouse = root / "warehouse.duckdb"
    load_deliveries(warehouse, files)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DBT_TARGET_PATH", str(root / "target"))
        patch.setenv("DBT_LOG_PATH", str(root / "logs"))
        summary = transform.build_models(window_settings(warehouse, MONTHS[0], MONTHS[-1]))
    return {
        "warehouse": warehouse,
        "target": transform.latest_run_target(root / "target"),  # this build's folder
        "summary": summary,
        "rows": {p.stem.removeprefix("resale-flat-prices-"): csv_rows(p) for p in files},
    }


@pytest.mark.slow
def test_build_models_builds_seeds_and_models_and_runs_no_test(small_build: dict) -> None:
    assert small_build["summary"] == {
        "operation": {"success": 1},
        "seed": {"success": len(SEEDS)},
        "model": {"success": 5},
    }


@pytest.mark.slow
def test_built_models_lists_each_model_in_flow_order_with_its_rows(small_build: dict) -> None:
    built = transform.built_models(
        small_build["warehouse"], "2023-02", "2023-02", small_build["target"]
    )
    assert built["name"].tolist() == FLOW_ORDER
    assert set(built["status"]) == {"success"}
    kinds = dict(zip(built["name"], built["materialized"], strict=True))
    assert kinds["flat_types"] == "seed"
    assert kinds["stg_hdb__resale_flat_prices"] == "view"
    assert kinds["fct_resale_transactions"] == "incremental"
    assert kinds["dim_town"] == "table"
    rows = built.set_index("name")
    total, february = sum(small_build["rows"].values()), small_build["rows"]["2023-02"]
    for name in ("fct_resale_transactions", "stg_hdb__resale_flat_prices"):
        assert (rows.loc[name, "rows"], rows.loc[name, "rows_in_window"]) == (total, february)
    agg = rows.loc["agg_monthly_town_prices"]
    assert 0 < agg["rows_in_window"] < agg["rows"]
    assert rows["rows_in_window"].isna().tolist() == [
        name in (*SEEDS, "dim_flat_type", "dim_town") for name in FLOW_ORDER
    ]
    assert rows.loc["fct_resale_transactions", "relation"] == "marts.fct_resale_transactions"


@pytest.mark.slow
def test_mart_preview_shows_the_window_without_run_specific_values(small_build: dict) -> None:
    warehouse = small_build["warehouse"]
    fact = transform.mart_preview(warehouse, "2023-02", "2023-03", rows=3)
    assert fact["month_key"].tolist() == ["2023-02"] * 3
    assert fact["source"].tolist() == ["resale-flat-prices-2023-02.csv"] * 3
    assert fact["line"].tolist() == [2, 3, 4]
    assert not {"_load_id", "_loaded_at", "_source", "_source_row"} & set(fact.columns)
    assert str(warehouse.parent) not in fact.to_string()
    assert str(Path.home()) not in fact.to_string()

    agg = transform.mart_preview(warehouse, "2023-03", "2023-03", mart="agg_monthly_town_prices")
    assert len(agg) == 5 and set(agg["month_key"]) == {"2023-03"}
    towns = transform.mart_preview(warehouse, "2023-03", "2023-03", rows=100, mart="dim_town")
    assert towns["town"].tolist() == sorted(towns["town"]) and len(towns) >= 26
