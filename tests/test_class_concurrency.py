"""A class's pipeline for real: three months at once through the run queue of the class's
Dagster (a real ``dagster-daemon`` over the instance in PostgreSQL), writing the shared
warehouse (a DuckLake whose catalog is on the same server), must all succeed, with every check
passing while the others write, and leave marts equal to a DuckDB file's of the same months.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from postgres_support import PostgresServer
from test_class_server import attach_lake, env_lines, set_up
from test_shared_warehouse import MARTS, mart_rows

from dagster_orchestration.constants import JOB_NAME
from dagster_orchestration.home import prepare_home
from hdb_elt.settings import REPO_ROOT, SNAPSHOT_DIR, load_settings
from hdb_elt.stage_notebooks import run_stages

MONTHS = ["2023-01", "2023-02", "2023-03"]
BIN = Path(sys.executable).parent
TIMEOUT_SECONDS = 1500


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The largest number of the (start, end) spans that overlap at one moment."""
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def wait_for_runs(instance: DagsterInstance, count: int, daemon_log: Path) -> list:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        records = instance.get_run_records(RunsFilter(job_name=JOB_NAME))
        if len(records) == count and all(r.dagster_run.is_finished for r in records):
            return records
        time.sleep(3)
    pytest.fail(
        f"the runs did not finish in time; the daemon said:\n{daemon_log.read_text()[-4000:]}"
    )


@pytest.mark.slow
def test_three_months_at_once_through_the_class_queue_build_the_marts_of_a_duckdb_file(
    postgres_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names, out = set_up(postgres_server, tmp_path / "class")
    pipeline = env_lines(out, "The instructor's .env")
    alice = env_lines(out, "alice's .env")
    common = {
        "HDB_RESALE_DATA_DIR": str(SNAPSHOT_DIR),
        "HDB_DAGSTER_RUNS_DIR": str(tmp_path / "runs"),
        "DBT_TARGET_PATH": str(tmp_path / "dbt-target"),
        "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano-lake.db'}",
        "TQDM_DISABLE": "1",
    }
    for name, value in {**common, **pipeline}.items():
        monkeypatch.setenv(name, value)
    # Set here, so that the variable prepare_home sets is put back after the test.
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    home = prepare_home(tmp_path / "dagster_home")  # the class's dagster.yaml: PostgreSQL
    env = dict(os.environ)
    workspace = ["-m", "dagster_orchestration.definitions"]

    daemon_log = tmp_path / "daemon.log"
    with daemon_log.open("w") as log:
        daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", *workspace],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        backfill = ["job", "backfill", *workspace, "-j", JOB_NAME, "--noprompt"]
        subprocess.run(
            [str(BIN / "dagster"), *backfill, "--partitions", ",".join(MONTHS)],
            cwd=REPO_ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        with DagsterInstance.from_config(str(home)) as instance:
            records = wait_for_runs(instance, len(MONTHS), daemon_log)
            failed = [
                r.dagster_run for r in records if r.dagster_run.status != DagsterRunStatus.SUCCESS
            ]
            for run in failed:
                errors = [
                    e.message
                    for e in instance.all_logs(run.run_id)
                    if e.dagster_event and e.dagster_event.is_failure
                ]
                print(run.tags.get("dagster/partition"), run.status, *errors, sep="\n")
            assert not failed, [r.tags.get("dagster/partition") for r in failed]
            assert sorted(r.dagster_run.tags["dagster/partition"] for r in records) == MONTHS
            spans = [(r.start_time, r.end_time) for r in records]
            assert most_at_once(spans) == len(MONTHS), spans  # really at once, not one by one
            print(
                "runs of",
                ", ".join(f"{e - s:.1f} s" for s, e in spans),
                f"all three in {max(e for _, e in spans) - min(s for s, _ in spans):.1f} s",
            )

            # Every check of every run passed while the other months were being written,
            # the test stage's among them: each run's dbt tests and reconciliation saw its
            # months whole.
            for record in records:
                checks = {
                    e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
                    for e in (
                        r.event_log_entry.dagster_event
                        for r in instance.get_records_for_run(
                            record.dagster_run.run_id,
                            of_type=DagsterEventType.ASSET_CHECK_EVALUATION,
                        ).records
                    )
                }
                assert {"dbt_data_tests", "dbt_unit_tests", "fact_reconciles_with_raw"} <= set(
                    checks
                )
                assert all(checks.values()), checks
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)

    # The same months into a DuckDB file, the default warehouse, in one process.
    file = tmp_path / "file" / "hdb_resale.duckdb"
    monkeypatch.setenv("HDB_WAREHOUSE_CATALOG", "")
    monkeypatch.setenv("HDB_WAREHOUSE_PATH", str(file))
    monkeypatch.setenv("HDB_START_MONTH", MONTHS[0])
    monkeypatch.setenv("HDB_END_MONTH", MONTHS[-1])
    monkeypatch.setenv("MELTANO_DATABASE_URI", f"sqlite:///{tmp_path / 'meltano-file.db'}")
    run_stages(load_settings(), tmp_path / "runs-file")

    data_path = pipeline["HDB_WAREHOUSE_DATA_PATH"]
    with attach_lake(alice["HDB_WAREHOUSE_CATALOG"], data_path, read_only=True) as con:
        con.execute(f"attach '{file}' as file_warehouse (read_only)")
        months = Counter(
            m
            for (m,) in con.execute(
                "select month_key from warehouse.marts.fct_resale_transactions"
            ).fetchall()
        )
        assert sorted(months) == MONTHS
        for table in MARTS:
            lake_rows = mart_rows(con, table, "warehouse")
            assert lake_rows, table
            assert lake_rows == mart_rows(con, table, "file_warehouse"), table
    assert names.lake_db in pipeline["HDB_WAREHOUSE_CATALOG"]
