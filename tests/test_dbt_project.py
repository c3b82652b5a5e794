"""The dbt project (dbt_resale_flat/) on real deliveries: counts, idempotence, re-deliveries,
quarantine, tests that fail when they should, docs; plus quick checks that need no dbt run.

The slow tests share one fresh 12-month build and copy its warehouse file before changing
anything, so each dbt invocation (a few seconds each) is paid once.
"""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import duckdb
import pytest
from dbt_support import (
    MART_ORDER,
    SHARED_TOTAL_ROWS,
    copy_warehouse,
    dbt,
    dbt_settings,
    load_deliveries,
    mart_checksums,
    quarantine_rows,
    redeliver,
    shared_month_files,
    statuses,
    table_checksum,
)

from hdb_elt import transform
from hdb_elt.months import MonthError
from hdb_elt.settings import DBT_PROJECT_DIR
from hdb_elt.warehouse import connect, ensure_warehouse

needs_shared_data = pytest.mark.skipif(
    not shared_month_files(), reason="the shared reference deliveries are not on this machine"
)
WINDOW_ALL = ["--vars", json.dumps({"start_month": "2023-01", "end_month": "2023-12"})]


def columns_of(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    return [(row[0], row[1]) for row in con.execute(f"describe {table}").fetchall()]


def fact_rows_by_month(warehouse: Path) -> dict[str, int]:
    with connect(warehouse, read_only=True) as con:
        rows = con.execute(
            "select month_key, count(*) from marts.fct_resale_transactions group by 1"
        ).fetchall()
    return dict(rows)


def csv_rows(path: Path) -> int:
    with path.open(newline="", encoding="utf-8") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1


def failed_tests(run_results: dict, among: tuple[str, ...] = ("fail", "error")) -> set[str]:
    """Names of the data tests with one of these statuses (unique_id minus its type prefix
    and hash); ``among=("warn",)`` gives the warn-severity tests that found rows."""
    names = set()
    for unique_id, status in statuses(run_results).items():
        if unique_id.startswith("test.") and status in among:
            names.add(unique_id.split(".")[2])
    return names


# ---------------------------------------------------------------- quick checks, no dbt run


def test_window_vars_are_validated_before_reaching_dbt() -> None:
    assert transform.window_vars() == []
    assert transform.window_vars("2023-03", "2023-03") == [
        "--vars",
        '{"start_month": "2023-03", "end_month": "2023-03"}',
    ]
    for bad in ("2023-13", "2023-3", "2023-01'; drop table raw.resale_flat_prices; --"):
        with pytest.raises(MonthError):
            transform.window_vars(bad, None)


def test_run_dbt_runs_the_project_as_a_subprocess(monkeypatch, tmp_path: Path) -> None:
    calls = []

    def fake_run(command, **kwargs):
        calls.append((command, kwargs))
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    settings = dbt_settings(tmp_path / "w.duckdb")
    done = transform.build_window(settings, "2023-02", "2023-04", capture=True)
    assert done.returncode == 0
    (command, kwargs) = calls[0]
    assert Path(command[0]).name == "dbt"
    # The window in the environment, not in --vars: a new window keeps dbt's parsed project.
    assert command[1:4] == ["build", "--exclude-resource-type", "unit_test"]
    assert "--vars" not in command
    assert kwargs["env"]["HDB_DBT_START_MONTH"] == "2023-02"
    assert kwargs["env"]["HDB_DBT_END_MONTH"] == "2023-04"
    assert command[command.index("--project-dir") + 1] == str(DBT_PROJECT_DIR)
    assert command[command.index("--profiles-dir") + 1] == str(DBT_PROJECT_DIR)
    assert kwargs["cwd"] == DBT_PROJECT_DIR
    assert kwargs["env"]["HDB_WAREHOUSE_PATH"] == str(tmp_path / "w.duckdb")
    assert kwargs["capture_output"] is True


@needs_shared_data
def test_raw_helper_follows_the_contract(tmp_path: Path) -> None:
    """_source_row is the CSV line number (header = 1); each load has a row in raw._loads."""
    path = shared_month_files()[0]
    warehouse = tmp_path / "w.duckdb"
    first = load_deliveries(warehouse, [path])
    second = load_deliveries(warehouse, [path])
    with path.open(newline="", encoding="utf-8") as handle:
        expected = [(line, row[-1]) for line, row in enumerate(csv.reader(handle), 1) if line > 1]
    with connect(warehouse, read_only=True) as con:
        got = con.execute(
            "select _source_row, resale_price from raw.resale_flat_prices "
            "where _load_id = ? order by _source_row",
            [first],
        ).fetchall()
        loads = con.execute(
            "select load_id, row_count, months, committed_at from raw._loads order by committed_at"
        ).fetchall()
        (sources,) = con.execute(
            "select list(distinct _source) from raw.resale_flat_prices"
        ).fetchone()
    assert got == expected
    assert [(load[0], load[1], load[2]) for load in loads] == [
        (first, len(expected), ["2023-01"]),
        (second, len(expected), ["2023-01"]),
    ]
    assert loads[0][3] < loads[1][3]
    assert sources == [str(path.resolve())]


# ---------------------------------------------------------------- slow: real dbt runs


@pytest.fixture(scope="module")
def fresh_build(tmp_path_factory) -> dict:
    """A fresh warehouse with the 12 shared months, built once, with no audit.quarantine."""
    if not shared_month_files():
        pytest.skip("the shared reference deliveries are not on this machine")
    root = tmp_path_factory.mktemp("fresh")
    warehouse = root / "warehouse.duckdb"
    load_deliveries(warehouse, shared_month_files())
    with connect(warehouse) as con:
        # Before validate has ever run the table is absent: dbt must cope (on-run-start).
        con.execute("drop table audit.quarantine")
    code, output, results = dbt(["build"], warehouse, root / "target")
    return {
        "root": root,
        "warehouse": warehouse,
        "code": code,
        "output": output,
        "results": results,
    }


@pytest.mark.slow
def test_fresh_build_passes_every_test(fresh_build: dict) -> None:
    assert fresh_build["code"] == 0, fresh_build["output"][-3000:]
    results = statuses(fresh_build["results"])
    assert set(results.values()) <= {"success", "pass"}
    kinds = {unique_id.split(".")[0] for unique_id in results}
    assert {"seed", "model", "test", "unit_test"} <= kinds
    assert "test.dbt_resale_flat.assert_fact_reconciles_with_latest_delivery" in results
    assert sum(1 for u in results if u.startswith("unit_test.")) >= 5


@pytest.mark.slow
def test_fresh_build_has_one_row_and_one_id_per_sale(fresh_build: dict) -> None:
    warehouse = fresh_build["warehouse"]
    with connect(warehouse, read_only=True) as con:
        rows, ids = con.execute(
            "select count(*), count(distinct transaction_id) from marts.fct_resale_transactions"
        ).fetchone()
        quarantine = columns_of(con, "audit.quarantine")
        (aggregated,) = con.execute(
            "select sum(transactions) from marts.agg_monthly_town_prices"
        ).fetchone()
        (towns,) = con.execute("select count(*) from marts.dim_town").fetchone()
    assert (rows, ids) == (SHARED_TOTAL_ROWS, SHARED_TOTAL_ROWS)
    assert aggregated == SHARED_TOTAL_ROWS
    assert towns >= 26
    expected = {
        p.stem.removeprefix("resale-flat-prices-"): csv_rows(p) for p in shared_month_files()
    }
    assert fact_rows_by_month(warehouse) == expected
    # created by the on-run-start hook, with the warehouse module's columns
    ensure_warehouse(fresh_build["root"] / "reference.duckdb")
    with connect(fresh_build["root"] / "reference.duckdb", read_only=True) as con:
        assert quarantine == columns_of(con, "audit.quarantine")


@pytest.mark.slow
def test_rebuilding_every_month_gives_identical_marts(fresh_build: dict, tmp_path: Path) -> None:
    """Deleting and rebuilding all 12 months yields the same ids and the same aggregates."""
    warehouse = copy_warehouse(fresh_build["warehouse"], tmp_path / "again.duckdb")
    before = mart_checksums(warehouse)
    code, output, _ = dbt(["build", *WINDOW_ALL], warehouse, tmp_path / "target")
    assert code == 0, output[-3000:]
    assert mart_checksums(warehouse) == before


@pytest.mark.slow
def test_redelivered_months_equal_a_fresh_build(fresh_build: dict, tmp_path: Path) -> None:
    """Re-deliveries with rows removed and added, plus quarantined rows, rebuilt by window
    and by default, leave the marts equal to a fresh build from the final deliveries."""
    files = {p.stem.removeprefix("resale-flat-prices-"): p for p in shared_month_files()}
    with files["2023-03"].open(newline="", encoding="utf-8") as handle:
        march = list(csv.reader(handle))
    twin = march[10]  # an existing sale sold again, identically: must get its own id
    changed = [*march[11][:-1], str(int(float(march[11][-1])) + 1000)]
    new_march = redeliver(
        files["2023-03"],
        tmp_path / "deliveries" / "resale-flat-prices-2023-03.csv",
        drop_lines=[2, 3, 12, 500, 501],
        add_rows=[twin, changed],
    )
    new_july = redeliver(  # smaller: its stale rows must go
        files["2023-07"],
        tmp_path / "deliveries" / "resale-flat-prices-2023-07.csv",
        drop_lines=list(range(2, 42)),
        add_rows=[],
    )
    quarantined_may_rows = [5, 6]

    # The incremental path: the shared fresh build, then the changes as new loads.
    incremental = copy_warehouse(fresh_build["warehouse"], tmp_path / "incremental.duckdb")
    untouched = ("2023-01", "2023-02", "2023-06", "2023-08")
    before = _fact_of_months(incremental, untouched)
    load_deliveries(incremental, [new_march])
    quarantine_rows(incremental, "2023-05", quarantined_may_rows, "price_range")
    quarantine_rows(incremental, "2023-05", quarantined_may_rows[:1], "lease_year")  # 2 rules
    window = ["--vars", json.dumps({"start_month": "2023-03", "end_month": "2023-05"})]
    code, output, _ = dbt(["build", *window], incremental, tmp_path / "target-incremental")
    assert code == 0, output[-3000:]
    assert _fact_of_months(incremental, untouched) == before, "months outside the window changed"
    load_deliveries(incremental, [new_july])
    code, output, _ = dbt(["build"], incremental, tmp_path / "target-incremental")
    assert code == 0, output[-3000:]  # default: only July, whose delivery is new

    # The reference: a fresh warehouse loaded with the final deliveries.
    fresh = tmp_path / "fresh.duckdb"
    load_deliveries(fresh, [p for m, p in files.items() if m not in ("2023-03", "2023-07")])
    load_deliveries(fresh, [new_march, new_july])
    quarantine_rows(fresh, "2023-05", quarantined_may_rows, "price_range")
    code, output, _ = dbt(["build"], fresh, tmp_path / "target-fresh")
    assert code == 0, output[-3000:]

    counts = fact_rows_by_month(incremental)
    assert counts == fact_rows_by_month(fresh)
    assert counts["2023-03"] == csv_rows(files["2023-03"]) - 5 + 2
    assert counts["2023-05"] == csv_rows(files["2023-05"]) - 2
    assert counts["2023-07"] == csv_rows(files["2023-07"]) - 40
    # Same rows and ids everywhere; only the load that delivered unchanged months differs.
    business = "* exclude (_load_id, _loaded_at)"
    assert _fact(incremental, business) == _fact(fresh, business)
    for mart in ("agg_monthly_town_prices", "dim_town", "dim_flat_type"):
        order = MART_ORDER[mart]
        assert table_checksum(incremental, f"marts.{mart}", order) == table_checksum(
            fresh, f"marts.{mart}", order
        )
    with connect(incremental, read_only=True) as con:
        (twins,) = con.execute(
            "select count(*) from marts.fct_resale_transactions "
            "where month_key = '2023-03' and block = ? and street_name = ? and resale_price = ?",
            [twin[3], twin[4], float(twin[-1])],
        ).fetchone()
    assert twins >= 2


def _fact(warehouse: Path, columns: str, where: str = "true") -> list[tuple]:
    with connect(warehouse, read_only=True) as con:
        return con.execute(
            f"select {columns} from marts.fct_resale_transactions where {where} "
            "order by transaction_id"
        ).fetchall()


def _fact_of_months(warehouse: Path, months: tuple[str, ...]) -> list[tuple]:
    listed = ", ".join(f"'{m}'" for m in months)
    return _fact(warehouse, "*", f"month_key in ({listed})")


@pytest.mark.slow
def test_tampered_fact_fails_the_tests_that_guard_it(fresh_build: dict, tmp_path: Path) -> None:
    """Rows no correct model would write make the named tests fail, and only those."""
    warehouse = copy_warehouse(fresh_build["warehouse"], tmp_path / "tampered.duckdb")
    with connect(warehouse) as con:
        # a sale at an impossible price, with a duplicated id, on storey 80 of a band "80 TO 2"
        con.execute(
            """
            insert into marts.fct_resale_transactions
            select * replace (1 as resale_price, 0.01 as price_per_sqm, 80 as storey_lower,
                2 as storey_upper)
            from marts.fct_resale_transactions
            where month_key = '2023-04'
            limit 1
            """
        )
        # an unknown town and flat type in another month
        con.execute(
            """
            insert into marts.fct_resale_transactions
            select * replace (md5('tampered') as transaction_id, 'ATLANTIS' as town,
                '6 ROOM' as flat_type, 2100 as lease_commence_year)
            from marts.fct_resale_transactions
            where month_key = '2023-09'
            limit 1
            """
        )
    code, output, results = dbt(["test"], warehouse, tmp_path / "target")
    assert code != 0
    failed = failed_tests(results)
    expected = {
        "assert_fact_reconciles_with_latest_delivery",
        "unique_fct_resale_transactions_transaction_id",
        "accepted_range_fct_resale_transactions_resale_price__3000000__1000",
        "accepted_range_fct_resale_transactions_price_per_sqm__30000__100",
        "accepted_range_fct_resale_transactions_storey_lower__70__1",
        "accepted_range_fct_resale_transactions_lease_commence_year__extract_year_from_month___1960",
        "expression_is_true_fct_resale_transactions_storey_lower_storey_upper",
        "relationships_fct_resale_transactions_flat_type__flat_type__ref_dim_flat_type_",
    }
    # An unknown town is a warning, as at the gate: its sales are kept.
    assert failed_tests(results, among=("warn",)) == {
        "relationships_fct_resale_transactions_town__town__ref_dim_town_"
    }
    accepted_values = {
        f for f in failed if f.startswith("accepted_values_fct_resale_transactions_flat_type")
    }
    assert expected <= failed, output[-3000:]
    assert len(accepted_values) == 1
    # The tests that look at untouched data still pass: failures point at the tampering.
    assert failed == expected | accepted_values
    reconciliation = next(
        r for r in results["results"] if r["unique_id"].endswith("reconciles_with_latest_delivery")
    )
    assert reconciliation["failures"] == 2  # 2023-04 and 2023-09 each hold one row too many


@pytest.mark.slow
def test_reconciliation_catches_rows_quarantined_after_the_build(
    fresh_build: dict, tmp_path: Path
) -> None:
    """Quarantining rows of a built month leaves the fact stale until the month is rebuilt:
    the reconciliation test says so (here on its own, with dbt test --select)."""
    warehouse = copy_warehouse(fresh_build["warehouse"], tmp_path / "stale.duckdb")
    quarantine_rows(warehouse, "2023-11", [2], "price_range")
    code, _, results = dbt(
        ["test", "--select", "assert_fact_reconciles_with_latest_delivery"],
        warehouse,
        tmp_path / "target",
    )
    assert code != 0
    assert failed_tests(results) == {"assert_fact_reconciles_with_latest_delivery"}
    (result,) = [r for r in results["results"] if r["unique_id"].startswith("test.")]
    assert result["failures"] == 1  # one month disagrees


@pytest.mark.slow
def test_docs_generate_and_every_node_is_described(fresh_build: dict) -> None:
    target = fresh_build["root"] / "target-docs"
    code, output, _ = dbt(["docs", "generate"], fresh_build["warehouse"], target)
    assert code == 0, output[-3000:]
    manifest = json.loads((target / "manifest.json").read_text())
    catalog = json.loads((target / "catalog.json").read_text())
    undocumented = []
    for unique_id, node in [*manifest["nodes"].items(), *manifest["sources"].items()]:
        if node["resource_type"] not in ("model", "seed", "source", "snapshot"):
            continue
        if not node.get("description", "").strip():
            undocumented.append(unique_id)
        described = {
            name for name, c in node["columns"].items() if c.get("description", "").strip()
        }
        in_warehouse = catalog["nodes"].get(unique_id) or catalog["sources"].get(unique_id)
        assert in_warehouse is not None, f"{unique_id} is not in the catalog"
        for column in in_warehouse["columns"]:
            if column.lower() not in described:
                undocumented.append(f"{unique_id}.{column}")
    assert undocumented == []
    for model in MART_ORDER:
        assert f"model.dbt_resale_flat.{model}" in catalog["nodes"]


@pytest.mark.slow
def test_a_malformed_month_var_stops_dbt_with_a_clear_message(tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    ensure_warehouse(warehouse)
    code, output, _ = dbt(
        ["parse", "--vars", json.dumps({"start_month": "2023-01'; drop table raw._loads; --"})],
        warehouse,
        tmp_path / "target",
    )
    assert code != 0
    assert "is not a month: expected YYYY-MM" in output
    with connect(warehouse, read_only=True) as con:
        con.execute("select count(*) from raw._loads")


@pytest.mark.slow
def test_a_window_from_the_environment_rebuilds_its_months_and_keeps_the_parse(
    fresh_build: dict, tmp_path: Path
) -> None:
    """The pipeline's window reaches dbt in the environment (transform.window_env): exactly
    its months are rebuilt, and a new window does not make dbt re-parse the project (a new
    --vars would)."""
    warehouse = copy_warehouse(fresh_build["warehouse"], tmp_path / "window.duckdb")
    files = {path.name[-11:-4]: path for path in shared_month_files()}
    new = load_deliveries(warehouse, [files["2023-03"], files["2023-04"]])  # both new again
    settings = dbt_settings(warehouse)
    target = tmp_path / "target"

    def build(month: str) -> str:
        done = transform.build_window(
            settings,
            month,
            month,
            capture=True,
            extra_args=["--target-path", str(target), "--log-path", str(target / "logs")],
        )
        assert done.returncode == 0, transform.plain_output(done)[-3000:]
        return (target / "logs" / "dbt.log").read_text(errors="replace")

    def loads(month: str) -> set:
        with connect(warehouse, read_only=True) as con:
            return {
                load_id
                for (load_id,) in con.execute(
                    "select distinct _load_id from marts.fct_resale_transactions "
                    "where month_key = ?",
                    [month],
                ).fetchall()
            }

    april_before = loads("2023-04")
    assert april_before != {new}
    build("2023-03")
    assert loads("2023-03") == {new} and loads("2023-04") == april_before  # March only
    log = build("2023-04")
    assert loads("2023-04") == {new}
    second_run = log[log.rindex("Running with dbt=") :]
    assert "Unable to do partial parsing" not in second_run
    assert "Partial parsing enabled" in second_run
