"""The test stage (hdb_elt.test): dbt's tests as a table, the reconciliation, the gate.

Quick checks use small hand-made warehouses and dbt artifacts. The slow ones build three
reference months once (with a re-delivery and quarantined rows) and run ``dbt test`` twice:
on the build as it is, where everything passes, and on a tampered copy, where the tests that
guard the fact must fail by name. dbt writes into a private target folder
(``DBT_TARGET_PATH``) in every test, so runs never share ``dbt_resale_flat/target``.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from dbt_support import (
    copy_warehouse,
    dbt_settings,
    load_deliveries,
    quarantine_rows,
    redeliver,
    shared_month_files,
)

from hdb_elt import test as test_stage
from hdb_elt.months import Month
from hdb_elt.test import (
    RECONCILIATION_COLUMNS,
    TEST_COLUMNS,
    DbtTestRunError,
    QualityCheckFailed,
    pass_fail_table,
    quality_summary,
    raise_on_failures,
    reconciliation,
    run_tests,
)
from hdb_elt.transform import build_models, latest_run_target, new_run_target
from hdb_elt.warehouse import SOURCE_COLUMNS, connect

RECONCILES = "assert_fact_reconciles_with_latest_delivery"
PRICE_RANGE = "accepted_range_fct_resale_transactions_resale_price__3000000__1000"
PRICE_PER_SQM_RANGE = "accepted_range_fct_resale_transactions_price_per_sqm__30000__100"


def window_settings(warehouse: Path, start: str, end: str):
    return replace(
        dbt_settings(warehouse), start_month=Month.parse(start), end_month=Month.parse(end)
    )


def use_private_target(
    monkeypatch: pytest.MonkeyPatch, folder: Path, seed_from: Path | None = None
) -> Path:
    """Point dbt (and hdb_elt) at ``folder``/target; reuse a parsed project to save seconds."""
    target = folder / "target"
    target.mkdir(parents=True, exist_ok=True)
    if seed_from is not None and (seed_from / "partial_parse.msgpack").exists():
        shutil.copy(seed_from / "partial_parse.msgpack", target)
    monkeypatch.setenv("DBT_TARGET_PATH", str(target))
    monkeypatch.setenv("DBT_LOG_PATH", str(folder / "logs"))
    return target


def write_delivery(path: Path, month: str, n: int) -> Path:
    """A small delivery of ``n`` distinct rows of ``month`` (lines 2 to n + 1)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(SOURCE_COLUMNS)
        for i in range(n):
            writer.writerow([month, "BEDOK", "4 ROOM", str(100 + i), "BEDOK NTH RD", "04 TO 06",
                             "92", "Model A", "1980", "55 years", "500000"])  # fmt: skip
    return path


def results_table(*rows: dict) -> pd.DataFrame:
    defaults = {"kind": "data", "model": "fct_resale_transactions", "column": "",
                "severity": "error", "status": "pass", "failures": 0}  # fmt: skip
    return pd.DataFrame(
        [{**defaults, **row, "name": row.get("name", row["test"])} for row in rows],
        columns=TEST_COLUMNS,
    ).astype({"failures": "Int64"})


def recon_table(*rows: tuple[str, int, int, int]) -> pd.DataFrame:
    """(month, raw_rows, quarantined, fact_rows) -> a reconciliation table."""
    frame = pd.DataFrame(rows, columns=["month", "raw_rows", "quarantined", "fact_rows"])
    frame["expected"] = frame["raw_rows"] - frame["quarantined"]
    frame["difference"] = frame["fact_rows"] - frame["expected"]
    frame["status"] = ["ok" if d == 0 else "mismatch" for d in frame["difference"]]
    return frame[RECONCILIATION_COLUMNS]


# ---------------------------------------------------------------- reconciliation, no dbt


@pytest.fixture
def small_warehouse(tmp_path: Path) -> Path:
    """Jan delivered twice (5 rows, then 3), Feb once (4 rows, 2 of them quarantined, one by
    two rules), and a fact table holding Jan 3, Feb 2 and one March row raw never had."""
    warehouse = tmp_path / "w.duckdb"
    load_deliveries(
        warehouse,
        [
            write_delivery(tmp_path / "a" / "jan.csv", "2023-01", 5),
            write_delivery(tmp_path / "a" / "feb.csv", "2023-02", 4),
        ],
    )
    quarantine_rows(warehouse, "2023-01", [3], "price_range")  # of the superseded delivery
    load_deliveries(warehouse, [write_delivery(tmp_path / "b" / "jan.csv", "2023-01", 3)])
    quarantine_rows(warehouse, "2023-02", [2, 3], "price_range")
    quarantine_rows(warehouse, "2023-02", [2], "lease_year")
    with connect(warehouse) as con:
        con.execute("create schema marts")
        con.execute("create table marts.fct_resale_transactions (month_key varchar)")
        con.execute(
            "insert into marts.fct_resale_transactions select unnest(?::varchar[])",
            [["2023-01"] * 3 + ["2023-02"] * 2 + ["2023-03"]],
        )
    return warehouse


def test_reconciliation_counts_the_latest_delivery_minus_distinct_quarantined_rows(
    small_warehouse: Path,
) -> None:
    recon = reconciliation(small_warehouse, "2023-01", "2023-04")
    assert recon.columns.tolist() == RECONCILIATION_COLUMNS
    assert recon.values.tolist() == [
        ["2023-01", 3, 0, 3, 3, 0, "ok"],
        ["2023-02", 4, 2, 2, 2, 0, "ok"],
        ["2023-03", 0, 0, 0, 1, 1, "mismatch"],
        ["2023-04", 0, 0, 0, 0, 0, "no data"],
    ]
    assert reconciliation(small_warehouse, "2023-02", "2023-02")["month"].tolist() == ["2023-02"]


def test_reconciliation_shows_rows_quarantined_after_the_build(small_warehouse: Path) -> None:
    quarantine_rows(small_warehouse, "2023-01", [4], "price_range")
    jan = reconciliation(small_warehouse, "2023-01", "2023-01").iloc[0]
    assert (jan["quarantined"], jan["expected"], jan["difference"]) == (1, 2, 1)
    assert jan["status"] == "mismatch"


def test_reconciliation_without_quarantine_table_or_fact(small_warehouse: Path) -> None:
    with connect(small_warehouse) as con:
        con.execute("drop table audit.quarantine")
    feb = reconciliation(small_warehouse, "2023-02", "2023-02").iloc[0]
    assert (feb["quarantined"], feb["fact_rows"], feb["status"]) == (0, 2, "mismatch")
    with connect(small_warehouse) as con:
        con.execute("drop table marts.fct_resale_transactions")
    with pytest.raises(FileNotFoundError, match="run the transform stage first"):
        reconciliation(small_warehouse, "2023-02", "2023-02")


# ---------------------------------------------------------------- the table and the gate


def test_pass_fail_table_names_kind_model_column_and_severity() -> None:
    model = "model.p.fct_resale_transactions"
    manifest = {
        "nodes": {
            model: {"name": "fct_resale_transactions"},
            "test.p.unique_fct_id.1a": {
                "name": "unique_fct_id", "attached_node": model, "column_name": "id",
                "test_metadata": {"name": "unique"}, "config": {"severity": "ERROR"},
                "depends_on": {"nodes": [model]},
            },
            "test.p.range_fct_price.2b": {
                "name": "range_fct_price", "attached_node": model, "column_name": "price",
                "test_metadata": {"name": "accepted_range"}, "config": {"severity": "warn"},
                "depends_on": {"nodes": [model]},
            },
            "test.p.assert_it_reconciles": {
                "name": "assert_it_reconciles", "attached_node": None, "column_name": None,
                "config": {"severity": "error"},
                "depends_on": {"nodes": ["source.p.hdb.raw_rows", model]},
            },
            "test.p.source_unique.3c": {
                "name": "source_unique", "attached_node": None, "column_name": None,
                "test_metadata": {"name": "unique_combination_of_columns"},
                "config": {"severity": "error"}, "depends_on": {"nodes": ["source.p.hdb.raw_rows"]},
            },
        },
        "sources": {"source.p.hdb.raw_rows": {"schema": "raw", "identifier": "resale_flat_prices"}},
        "unit_tests": {
            "unit_test.p.fct_resale_transactions.test_window": {
                "name": "test_window", "model": "fct_resale_transactions",
            }
        },
    }  # fmt: skip
    results = [
        {"unique_id": "operation.p.on-run-start-0", "status": "success", "failures": 0},
        {"unique_id": "unit_test.p.fct_resale_transactions.test_window", "status": "fail",
         "failures": None},
        {"unique_id": "test.p.unique_fct_id.1a", "status": "fail", "failures": 2},
        {"unique_id": "test.p.range_fct_price.2b", "status": "warn", "failures": 7},
        {"unique_id": "test.p.assert_it_reconciles", "status": "pass", "failures": 0},
        {"unique_id": "test.p.source_unique.3c", "status": "pass", "failures": 0},
    ]  # fmt: skip
    table = pass_fail_table(results, manifest)
    assert table.columns.tolist() == TEST_COLUMNS
    assert table.astype(object).where(table.notna(), None).values.tolist() == [
        ["assert_it_reconciles", "data", "fct_resale_transactions", "", "error", "pass", 0,
         "assert_it_reconciles"],
        ["accepted_range", "data", "fct_resale_transactions", "price", "warn", "warn", 7,
         "range_fct_price"],
        ["unique", "data", "fct_resale_transactions", "id", "error", "fail", 2, "unique_fct_id"],
        ["unique_combination_of_columns", "data", "raw.resale_flat_prices", "", "error", "pass",
         0, "source_unique"],
        ["test_window", "unit", "fct_resale_transactions", "", "error", "fail", None,
         "test_window"],
    ]  # fmt: skip


def test_the_gate_passes_clean_results_and_warnings() -> None:
    recon = recon_table(("2023-01", 10, 1, 9), ("2023-02", 8, 0, 8))
    passing = results_table({"test": "unique"}, {"test": "test_window", "kind": "unit"})
    assert raise_on_failures(passing, recon) is None
    warned = results_table(
        {"test": "unique"}, {"test": "range", "severity": "warn", "status": "warn", "failures": 3}
    )
    assert raise_on_failures(warned, recon) is None
    no_data = pd.concat([recon, recon_table(("2023-03", 0, 0, 0)).assign(status="no data")])
    assert raise_on_failures(passing, no_data) is None


def test_the_gate_names_failing_tests_and_months() -> None:
    tests = results_table(
        {"test": "unique"},
        {"test": "accepted_range", "name": PRICE_RANGE, "column": "resale_price",
         "status": "fail", "failures": 1},
        {"test": RECONCILES, "status": "fail", "failures": 2},
        {"test": "range", "name": "a_warning", "severity": "warn", "status": "warn"},
        {"test": "test_window", "kind": "unit", "status": "error", "failures": None},
    )  # fmt: skip
    recon = recon_table(("2023-01", 2552, 0, 2552), ("2023-02", 1837, 0, 1838),
                        ("2023-03", 2277, 3, 2264))  # fmt: skip
    with pytest.raises(QualityCheckFailed) as failed:
        raise_on_failures(tests, recon)
    assert failed.value.tests == [PRICE_RANGE, RECONCILES, "test_window"]
    assert failed.value.months == ["2023-02", "2023-03"]
    message = str(failed.value)
    described = f"{PRICE_RANGE} (accepted_range on fct_resale_transactions.resale_price)"
    assert f"{described}: fail, 1 failing row(s)" in message
    assert "test_window (unit test on fct_resale_transactions): error" in message
    assert f"{RECONCILES} (singular test on fct_resale_transactions): fail, 2 failing" in message
    assert "2023-02: the fact holds 1,838 rows, expected 1,837" in message
    assert "(2,277 delivered - 3 quarantined), difference -10" in message
    assert "a_warning" not in message and "2023-01" not in message


def test_the_gate_refuses_when_no_test_ran() -> None:
    with pytest.raises(QualityCheckFailed, match="No dbt test ran"):
        raise_on_failures(results_table(), recon_table(("2023-01", 1, 0, 1)))


def test_quality_summary() -> None:
    tests = results_table(
        {"test": "a"}, {"test": "b", "status": "fail"}, {"test": "c", "kind": "unit"}
    )
    recon = recon_table(("2023-01", 1, 0, 1), ("2023-02", 1, 0, 2))
    assert quality_summary(tests, recon) == (
        "3 tests (2 data, 1 unit): 1 fail, 2 pass. Reconciliation: 1 month(s) reconcile, 1 do not."
    )


def test_run_tests_stops_when_dbt_could_not_test(monkeypatch, tmp_path: Path) -> None:
    stale = {"metadata": {}, "results": []}  # an earlier run's, or a concurrent one's
    for target in (use_private_target(monkeypatch, tmp_path), new_run_target()):
        (target / "run_results.json").write_text(json.dumps(stale))
        (target / "manifest.json").write_text('{"nodes": {}, "unit_tests": {}}')
    calls, envs, behaviour = [], [], {"returncode": 2, "results": None}

    def fake_run_dbt(args, settings, *, capture=False, env=None):
        calls.append(args)
        envs.append(env)
        if behaviour["results"] is not None:
            target = Path(env["DBT_TARGET_PATH"])  # this run's own folder
            run_results = {"metadata": {}, "results": behaviour["results"]}
            (target / "run_results.json").write_text(json.dumps(run_results))
            (target / "manifest.json").write_text('{"nodes": {}, "unit_tests": {}}')
        output = "\x1b[31mCompilation Error\x1b[0m in x"
        return subprocess.CompletedProcess(args, behaviour["returncode"], output, "")

    monkeypatch.setattr(test_stage, "run_dbt", fake_run_dbt)
    settings = window_settings(tmp_path / "w.duckdb", "2023-02", "2023-03")
    with pytest.raises(DbtTestRunError, match="stopped before running any test") as stopped:
        run_tests(settings)
    assert "Compilation Error in x" in str(stopped.value)
    # No window reaches dbt test (it reuses the transform stage's parse); the window it tested
    # goes into dbt's metadata, for the test asset's checks.
    assert calls[0] == ["test"]
    assert envs[0]["HDB_DBT_START_MONTH"] == envs[0]["HDB_DBT_END_MONTH"] == ""
    assert envs[0]["DBT_ENV_CUSTOM_ENV_HDB_RUN_WINDOW"] == "2023-02..2023-03"

    behaviour["returncode"] = 0  # finished, but the results in the folder are not its own
    with pytest.raises(DbtTestRunError, match="results are missing"):
        run_tests(settings)

    hook = {"unique_id": "operation.p.on-run-start-0", "status": "error", "message": "locked"}
    behaviour.update(returncode=1, results=[hook])
    with pytest.raises(DbtTestRunError, match=r"operation\.p\.on-run-start-0: locked"):
        run_tests(settings)


# ---------------------------------------------------------------- slow: real dbt runs


@pytest.fixture(scope="module")
def quality_build(tmp_path_factory) -> dict:
    """Jan..Mar of the reference data, Jan re-delivered without lines 2-6, two Feb rows
    quarantined (one by two rules), one row of the superseded Jan delivery quarantined;
    seeds and models built once for the window."""
    files = shared_month_files()[:3]
    if not files:
        pytest.skip("the shared reference deliveries are not on this machine")
    root = tmp_path_factory.mktemp("quality")
    warehouse = root / "warehouse.duckdb"
    load_deliveries(warehouse, files)
    quarantine_rows(warehouse, "2023-01", [7], "price_range")  # superseded below
    new_jan = redeliver(files[0], root / "in" / files[0].name, drop_lines=range(2, 7), add_rows=[])
    load_deliveries(warehouse, [new_jan])
    quarantine_rows(warehouse, "2023-02", [5, 6], "price_range")
    quarantine_rows(warehouse, "2023-02", [5], "lease_year")
    settings = window_settings(warehouse, "2023-01", "2023-03")
    with pytest.MonkeyPatch.context() as patch:
        target = use_private_target(patch, root)
        build_models(settings)
        target = latest_run_target(target)  # the build's own folder
    with files[1].open(newline="", encoding="utf-8") as handle:
        feb_rows = sum(1 for _ in csv.reader(handle)) - 1
    return {"warehouse": warehouse, "target": target, "settings": settings, "feb_rows": feb_rows}


@pytest.mark.slow
def test_a_correct_build_passes_every_test_and_reconciles(
    quality_build: dict, monkeypatch, tmp_path: Path
) -> None:
    target = use_private_target(monkeypatch, tmp_path, seed_from=quality_build["target"])
    tests = run_tests(quality_build["settings"])

    manifest = json.loads((latest_run_target(target) / "manifest.json").read_text())
    every_test = {n["name"] for n in manifest["nodes"].values() if n["resource_type"] == "test"}
    every_test |= {u["name"] for u in manifest["unit_tests"].values()}
    assert sorted(tests["name"]) == sorted(every_test)
    assert set(tests["status"]) == {"pass"}, tests[tests["status"] != "pass"]
    assert set(tests["kind"]) == {"data", "unit"}
    assert RECONCILES in set(tests["name"])
    assert "raw.resale_flat_prices" in set(tests["model"])

    recon = reconciliation(quality_build["warehouse"], "2023-01", "2023-03")
    by_month = recon.set_index("month")
    assert by_month.loc["2023-01", "quarantined"] == 0  # its quarantined row was superseded
    assert by_month.loc["2023-02", "quarantined"] == 2  # one row, two rules: counted once
    assert by_month.loc["2023-02", "fact_rows"] == quality_build["feb_rows"] - 2
    assert set(recon["status"]) == {"ok"}
    raise_on_failures(tests, recon)


@pytest.mark.slow
def test_a_tampered_fact_fails_the_named_tests_and_the_gate_names_them(
    quality_build: dict, monkeypatch, tmp_path: Path
) -> None:
    warehouse = copy_warehouse(quality_build["warehouse"], tmp_path / "tampered.duckdb")
    with connect(warehouse) as con:
        con.execute(  # a February sale at an impossible price
            """
            insert into marts.fct_resale_transactions
            select * replace (md5('tampered') as transaction_id, 1 as resale_price,
                0.01 as price_per_sqm)
            from marts.fct_resale_transactions where month_key = '2023-02' limit 1
            """
        )
        con.execute(  # ten March sales lost
            "delete from marts.fct_resale_transactions "
            "where month_key = '2023-03' and _source_row between 2 and 11"
        )
    use_private_target(monkeypatch, tmp_path, seed_from=quality_build["target"])
    tests = run_tests(replace(quality_build["settings"], warehouse_path=warehouse))

    failed = tests[tests["status"] != "pass"]
    assert set(failed["name"]) == {RECONCILES, PRICE_RANGE, PRICE_PER_SQM_RANGE}
    assert set(failed["status"]) == {"fail"}
    assert failed.set_index("name")["failures"].to_dict() == {
        RECONCILES: 2,  # two months disagree
        PRICE_RANGE: 1,
        PRICE_PER_SQM_RANGE: 1,
    }

    recon = reconciliation(warehouse, "2023-01", "2023-03").set_index("month")
    assert recon["difference"].to_dict() == {"2023-01": 0, "2023-02": 1, "2023-03": -10}
    assert recon["status"].to_dict() == {"2023-01": "ok", "2023-02": "mismatch",
                                         "2023-03": "mismatch"}  # fmt: skip

    with pytest.raises(QualityCheckFailed) as gate:
        raise_on_failures(tests, recon.reset_index())
    assert sorted(gate.value.tests) == sorted([RECONCILES, PRICE_RANGE, PRICE_PER_SQM_RANGE])
    assert gate.value.months == ["2023-02", "2023-03"]
    assert f"{PRICE_RANGE} (accepted_range on fct_resale_transactions.resale_price)" in str(
        gate.value
    )
