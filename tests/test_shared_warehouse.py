"""The shared class mode's warehouse: a DuckLake with its catalog in a real PostgreSQL server
(tests/postgres_support.py) and its Parquet files in a folder.

The five stage notebooks run on it for the 12 months of 2023 and must build marts equal, row
for row, to the DuckDB file's; a failed delivery must leave the lake as it was, the gate must
quarantine there as in a file, and running a month again must change nothing.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from faults.support import Pipeline, delivery_name, read_csv, set_column, write_csv
from postgres_support import PostgresServer

from hdb_elt.settings import SNAPSHOT_DIR, SettingsError, load_settings
from hdb_elt.stage_notebooks import run_stages
from hdb_elt.warehouse import (
    BY_MONTH,
    WarehouseUnavailableError,
    connect,
    ensure_warehouse,
    open_lake,
)

MARTS = ("agg_monthly_town_prices", "dim_flat_type", "dim_town", "fct_resale_transactions")
# Differ from one load to the next by design; file paths are compared by name.
LOAD_COLUMNS = ("_load_id", "_loaded_at")


def test_a_catalog_needs_a_data_path_and_a_connection_string(tmp_path: Path) -> None:
    base = {"HDB_WAREHOUSE_PATH": str(tmp_path / "w.duckdb")}
    assert load_settings(base, dotenv=False).lake is None  # the default: the file
    with pytest.raises(SettingsError, match="HDB_WAREHOUSE_DATA_PATH is not"):
        load_settings({**base, "HDB_WAREHOUSE_CATALOG": "host=h dbname=d"}, dotenv=False)
    with pytest.raises(SettingsError, match="not a libpq connection string"):
        load_settings(
            {**base, "HDB_WAREHOUSE_CATALOG": "lake", "HDB_WAREHOUSE_DATA_PATH": str(tmp_path)},
            dotenv=False,
        )
    settings = load_settings(
        {
            **base,
            "HDB_WAREHOUSE_CATALOG": "host=h port=5 dbname=d user=u password=secret",
            "HDB_WAREHOUSE_DATA_PATH": str(tmp_path),
        },
        dotenv=False,
    )
    assert settings.lake is not None and settings.lake.data_path == tmp_path
    assert "secret" not in settings.describe() + repr(settings)
    assert "u@h:5/d" in settings.describe()
    env = settings.child_env()
    assert env["HDB_WAREHOUSE_CATALOG"].endswith("password=secret")
    assert Path(env["HDB_DUCKDB_EXTENSION_DIRECTORY"]).is_dir()
    file_env = load_settings(base, dotenv=False).child_env()
    assert file_env["HDB_WAREHOUSE_CATALOG"] == ""  # wins over a .env naming a lake


@pytest.fixture
def lake_env(postgres_server: PostgresServer) -> Iterator[dict[str, str]]:
    """The settings of a new, empty lake: its own catalog database and data folder."""
    database = postgres_server.create_database("lake")
    files = Path(tempfile.mkdtemp(prefix="hdb-lake-files-"))
    yield {
        "HDB_WAREHOUSE_CATALOG": postgres_server.dsn(database),
        "HDB_WAREHOUSE_DATA_PATH": str(files),
    }
    shutil.rmtree(files, ignore_errors=True)


def test_an_unreachable_catalog_is_named_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HDB_WAREHOUSE_CATALOG", "host=127.0.0.1 port=1 dbname=x password=hush")
    monkeypatch.setenv("HDB_WAREHOUSE_DATA_PATH", str(tmp_path))
    with pytest.raises(WarehouseUnavailableError) as caught:
        ensure_warehouse(tmp_path / "unused.duckdb")
    assert "127.0.0.1:1/x" in str(caught.value) and "hush" not in str(caught.value)
    assert "PostgreSQL server is running" in str(caught.value)


@pytest.mark.slow
def test_a_new_lake_has_the_tables_partitioned_by_month(
    lake_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in lake_env.items():
        monkeypatch.setenv(name, value)
    with (
        pytest.raises(FileNotFoundError, match="run the extract-load stage first"),
        connect(tmp_path / "unused.duckdb", read_only=True) as con,
    ):
        con.execute("select count(*) from raw.resale_flat_prices").fetchone()
    first = ensure_warehouse(tmp_path / "unused.duckdb")
    assert ensure_warehouse(tmp_path / "unused.duckdb") == first  # made once
    lake = load_settings(dotenv=False).lake
    with open_lake(lake, read_only=True) as con:
        partitioned = {
            f"{schema}.{table}"
            for schema, table in con.execute(
                """select s.schema_name, t.table_name
                   from __ducklake_metadata_warehouse.ducklake_partition_info p
                   join __ducklake_metadata_warehouse.ducklake_table t using (table_id)
                   join __ducklake_metadata_warehouse.ducklake_schema s using (schema_id)
                   where p.end_snapshot is null and t.end_snapshot is null"""
            ).fetchall()
        }
        with pytest.raises(Exception, match=r"read-only|read only"):
            con.execute("delete from raw.resale_flat_prices")
    assert partitioned == set(BY_MONTH)


def mart_rows(con, table: str, catalog: str) -> list[tuple]:
    columns = [
        d[0]
        for d in con.execute(f"select * from {catalog}.marts.{table} limit 0").description
        if d[0] not in LOAD_COLUMNS
    ]
    kept = ", ".join(
        "regexp_extract(_source, '[^/]*$')" if c == "_source" else f'"{c}"' for c in columns
    )
    return con.execute(f"select {kept} from {catalog}.marts.{table} order by all").fetchall()


@pytest.mark.slow
def test_the_stage_notebooks_on_the_lake_build_the_marts_of_the_duckdb_file(
    lake_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = {
        "HDB_RESALE_DATA_DIR": str(SNAPSHOT_DIR),
        "HDB_START_MONTH": "2023-01",
        "HDB_END_MONTH": "2023-12",
        "DBT_TARGET_PATH": str(tmp_path / "dbt-target"),
        "TQDM_DISABLE": "1",
    }
    for name, value in base.items():
        monkeypatch.setenv(name, value)
    file = tmp_path / "file" / "hdb_resale.duckdb"
    monkeypatch.setenv("MELTANO_DATABASE_URI", f"sqlite:///{tmp_path / 'meltano-file.db'}")
    monkeypatch.setenv("HDB_WAREHOUSE_CATALOG", "")
    monkeypatch.setenv("HDB_WAREHOUSE_PATH", str(file))
    file_runs = run_stages(load_settings(), tmp_path / "runs-file")
    assert [run.stage for run in file_runs][-1] == "05_report"

    monkeypatch.setenv("MELTANO_DATABASE_URI", f"sqlite:///{tmp_path / 'meltano-lake.db'}")
    for name, value in lake_env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.lake is not None
    lake_runs = run_stages(settings, tmp_path / "runs-lake")
    assert [run.stage for run in lake_runs] == [run.stage for run in file_runs]
    report = (tmp_path / "runs-lake" / "05_report.ipynb").read_text()
    assert "25,777" in report

    with open_lake(settings.lake, read_only=True) as con:
        con.execute(f"attach '{file}' as file_warehouse (read_only)")
        assert con.execute("select count(*) from raw.resale_flat_prices").fetchone()[0] == 25777
        for table in MARTS:
            lake_rows = mart_rows(con, table, "warehouse")
            assert lake_rows, table
            assert lake_rows == mart_rows(con, table, "file_warehouse"), table
        assert not list((settings.lake.data_path).glob("*.duckdb"))


@pytest.mark.slow
def test_on_the_lake_a_bad_delivery_changes_nothing_a_bad_row_is_quarantined_and_a_rerun_is_idempotent(  # noqa: E501
    lake_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "dbt-target"))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    pipeline = Pipeline(tmp_path / "pipeline", start="2023-01", end="2023-03", env=lake_env)
    pipeline.deliveries.mkdir(parents=True)
    for month in ("2023-01", "2023-02"):
        shutil.copy(SNAPSHOT_DIR / delivery_name(month), pipeline.deliveries)
    pipeline.activate(monkeypatch)
    assert pipeline.run(dbt_tests=True).stage is None

    def state() -> dict[str, object]:
        with connect(pipeline.warehouse, read_only=True) as con:
            return {
                "snapshot": con.execute(
                    "select max(snapshot_id) from ducklake_snapshots('warehouse')"
                ).fetchone()[0],
                "raw": con.execute("select count(*) from raw.resale_flat_prices").fetchone()[0],
                "fact": mart_rows(con, "fct_resale_transactions", "warehouse"),
            }

    before = state()
    assert before["raw"] == 2552 + 1837

    # A delivery the tap cannot trust: nothing lands, the lake keeps its last snapshot.
    header, rows = read_csv(SNAPSHOT_DIR / delivery_name("2023-03"))
    march = pipeline.deliveries / delivery_name("2023-03")
    write_csv(march, header, set_column(rows, header, "resale_price", "n/a", [14]))
    outcome = pipeline.run()
    assert outcome.stage == "extract-load"
    assert "line 14, column resale_price: 'n/a' is not a number" in outcome.message
    assert state() == before

    # One impossible price: that row is quarantined, the month goes through without it.
    write_csv(march, header, set_column(rows, header, "resale_price", "1", [2]))
    outcome = pipeline.run(dbt_tests=True)
    assert outcome.stage is None, outcome.message
    assert "line 2: resale_price '1' is below 50,000" in outcome.message
    with connect(pipeline.warehouse, read_only=True) as con:
        quarantined = con.execute(
            "select month, _source_row, rule from audit.quarantine order by all"
        ).fetchall()
        fact_march = con.execute(
            "select count(*) from marts.fct_resale_transactions where month_key = '2023-03'"
        ).fetchone()[0]
    assert quarantined == [("2023-03", 2, "resale_price_plausible")]
    assert fact_march == len(rows) - 1

    # The same deliveries again: nothing new is loaded, the marts do not change.
    after = state()
    again = pipeline.run(dbt_tests=True)
    assert again.stage is None, again.message
    assert "nothing new to load" in again.message
    assert state()["fact"] == after["fact"] and state()["raw"] == after["raw"]


@pytest.mark.slow
def test_the_doctor_checks_the_shared_warehouse(
    lake_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from classroom.doctor import FAIL, OK, check_lake

    for name, value in lake_env.items():
        monkeypatch.setenv(name, value)
    lake = load_settings(dotenv=False).lake
    assert check_lake(lake).status == OK and "empty" in check_lake(lake).detail
    ensure_warehouse(tmp_path / "unused.duckdb")
    found = check_lake(lake)
    assert found.status == OK and "reachable, at snapshot" in found.detail
    down = replace(lake, catalog=lake.catalog.replace("port=", "port=1"))
    found = check_lake(down)
    assert found.status == FAIL and "PostgreSQL server is running" in found.fix
    assert "password" not in found.detail + found.fix
    assert check_lake(replace(lake, data_path=tmp_path / "missing")).status == FAIL


# One run of the stages for one month, as a separate process: extract-load, the gate, dbt build,
# then dbt's tests with the reconciliation (what the 01..04 notebooks call).
ONE_MONTH_RUN = """
import sys
from pathlib import Path
from hdb_elt.extract_load import run_extract_load
from hdb_elt.settings import stage_settings
from hdb_elt.test import raise_on_failures, reconciliation, run_tests
from hdb_elt.transform import build_models
from hdb_elt.validation import raise_if_blocked, read_deliveries, record_results, validate_load

s = stage_settings(sys.argv[1], sys.argv[1])
run_extract_load(s, log_dir=Path(sys.argv[2]))
report = validate_load(read_deliveries(s.warehouse_path, s.start_month, s.end_month),
                       s.start_month, s.end_month)
record_results(s.warehouse_path, report)
raise_if_blocked(report)
build_models(s)
raise_on_failures(run_tests(s), reconciliation(s.warehouse_path, s.start_month, s.end_month))
"""


@pytest.mark.slow
def test_three_months_at_once_on_the_lake_build_the_marts_of_one_at_a_time_in_a_file(
    lake_env: dict[str, str], tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    months = ("2023-03", "2023-04", "2023-05")
    base = {
        **os.environ,
        "HDB_RESALE_DATA_DIR": str(SNAPSHOT_DIR),
        "DBT_TARGET_PATH": str(tmp_path / "dbt-target"),
        "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
    }

    def start(month: str, env: dict[str, str]) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", ONE_MONTH_RUN, month, str(tmp_path / "logs" / month)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    file = tmp_path / "file.duckdb"
    file_env = {**base, "HDB_WAREHOUSE_PATH": str(file), "HDB_WAREHOUSE_CATALOG": ""}
    for month in months:  # the DuckDB file: one run at a time
        run = start(month, file_env)
        assert run.wait(600) == 0, run.stdout.read()

    lake = {**base, **lake_env}
    runs = [start(month, lake) for month in months]  # the lake: all three at once
    outputs = [(run.wait(900), run.stdout.read()) for run in runs]
    assert [code for code, _ in outputs] == [0, 0, 0], "\n\n".join(out for _, out in outputs)

    settings = load_settings({**lake_env}, dotenv=False)
    with open_lake(settings.lake, read_only=True) as con:
        con.execute(f"attach '{file}' as file_warehouse (read_only)")
        for table in MARTS:
            assert mart_rows(con, table, "warehouse") == mart_rows(con, table, "file_warehouse")
        months_built = con.execute(
            "select list(distinct month_key order by month_key) from marts.fct_resale_transactions"
        ).fetchone()[0]
    assert tuple(months_built) == months
