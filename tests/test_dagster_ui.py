"""`dagster dev` for real: runs launched through its GraphQL API (what the UI calls), the UI in
headless Chromium, and a 12-month asset backfill: its months in ranges, the runs one at a time.

Screenshots go to test-artifacts/dagster/ (git-ignored). Chromium is Debian's (`apt-get install
chromium`), driven by Playwright; without it the browser test is skipped, except under CI.
"""

from __future__ import annotations

import itertools
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from dagster_support import dagster_environment, mart_checksums, notebook_text

from dagster_orchestration.constants import GROUP, JOB_NAME
from dagster_orchestration.partitions import MONTHS_PER_BACKFILL_RUN, run_months
from dagster_orchestration.records import window_label
from hdb_elt.settings import REPO_ROOT
from hdb_elt.stage_notebooks import STAGE_NAMES as STAGE_KEYS
from hdb_elt.stage_notebooks import STAGES

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "dagster"
LOCATION = "dagster_orchestration.definitions"
YEAR = [f"2023-{month:02d}" for month in range(1, 13)]
DONE = {"SUCCESS", "FAILURE", "CANCELED"}


@dataclass
class DevServer:
    url: str
    root: Path
    warehouse: Path
    log: Path

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        response = requests.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60
        )
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_loaded(server: DevServer, process: subprocess.Popen, timeout: float = 240) -> None:
    query = """{ workspaceOrError { ... on Workspace { locationEntries {
        name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"dagster dev exited:\n{server.log_tail()}"
        try:
            entries = server.graphql(query)["workspaceOrError"]["locationEntries"]
        except (requests.RequestException, KeyError, TypeError):
            entries = []
        if entries and all(e["loadStatus"] == "LOADED" for e in entries):
            (entry,) = entries
            assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry
            return
        time.sleep(1)
    pytest.fail(f"dagster dev did not load the code location in {timeout} s:\n{server.log_tail()}")


@pytest.fixture(scope="module")
def dagster_dev(
    shared_monthly: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevServer]:
    """`dagster dev` on loopback with a temporary DAGSTER_HOME holding the project's
    dagster.yaml, reading the shared 2023 deliveries into a temporary warehouse. It runs in
    the temporary folder, so the recorded notebooks (under it) can be opened from the UI."""
    root = tmp_path_factory.mktemp("dagster-dev")
    with dagster_environment(root, shared_monthly) as env:
        port = free_port()
        server = DevServer(
            f"http://127.0.0.1:{port}", root, Path(env["HDB_WAREHOUSE_PATH"]), root / "dev.log"
        )
        dagster = str(Path(sys.executable).with_name("dagster"))
        with server.log.open("w") as log:
            process = subprocess.Popen(
                [dagster, "dev", "-m", LOCATION, "-h", "127.0.0.1", "-p", str(port)],
                cwd=root,
                env=os.environ.copy(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_until_loaded(server, process)
            yield server
        finally:
            os.killpg(process.pid, signal.SIGINT)  # dagster dev stops its webserver and daemon
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_for_run(server: DevServer, run_id: str, timeout: float = 1200) -> dict:
    query = """query($id: ID!) { runOrError(runId: $id) { ... on Run {
        runId status startTime endTime tags { key value } } } }"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = server.graphql(query, {"id": run_id})["runOrError"]
        if run["status"] in DONE:
            return run
        time.sleep(3)
    pytest.fail(f"run {run_id} did not finish in {timeout} s:\n{server.log_tail()}")


def latest_materialization_metadata(server: DevServer, asset: str) -> dict:
    """The metadata of an asset's latest materialization, read from the server's instance."""
    from dagster import AssetKey, DagsterInstance

    with DagsterInstance.from_config(str(server.root / "dagster_home")) as instance:
        event = instance.get_latest_materialization_event(AssetKey(asset))
    assert event is not None, f"{asset} was not materialized"
    return dict(event.asset_materialization.metadata)


def chromium() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: CI installs it (apt-get install chromium).")
    pytest.skip(f"{CHROMIUM} is not installed (Debian/Ubuntu: apt-get install chromium).")


def test_a_partition_launched_through_graphql_succeeds_and_the_ui_shows_it(
    dagster_dev: DevServer, tmp_path: Path
) -> None:
    from dagster_graphql import DagsterGraphQLClient
    from playwright.sync_api import expect, sync_playwright

    browser = chromium()
    port = int(dagster_dev.url.rsplit(":", 1)[1])
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    run_id = client.submit_job_execution(
        JOB_NAME, repository_location_name=LOCATION, tags={"dagster/partition": "2023-01"}
    )
    run = wait_for_run(dagster_dev, run_id)
    assert run["status"] == "SUCCESS", dagster_dev.log_tail()

    # The executed notebooks of the run, and the UI's notebook view of one of them.
    (folder,) = (dagster_dev.root / "runs" / "2023-01").iterdir()
    assert folder.name.endswith(run_id[:8])
    assert "start_month = '2023-01'" in notebook_text(folder / "02_validate.ipynb")
    shown = requests.get(
        f"{dagster_dev.url}/notebook",
        params={"path": str(folder / "02_validate.ipynb"), "repoLocName": LOCATION},
        timeout=60,
    )
    assert shown.status_code == 200 and "window 2023-01..2023-01" in shown.text
    # The record starts with the learner's notebook: dagstermill's plumbing is folded away.
    assert "_reconstitute_job_context" not in shown.text
    assert "_reconstitute_job_context" not in (folder / "02_validate.html").read_text()
    # Every materialization carries its executed notebook, and a link to the UI's page for it.
    for key, stage in zip(STAGE_KEYS, STAGES, strict=True):
        metadata = latest_materialization_metadata(dagster_dev, key)
        assert metadata["Executed notebook"].value == str(folder / f"{stage}.ipynb"), key
        assert metadata["Open the executed notebook"].value.startswith("/notebook?path="), key

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a new, empty profile
            executable_path=str(browser),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900},
        )
        try:
            page = context.new_page()
            page.goto(f"{dagster_dev.url}/locations/{LOCATION}/asset-groups/{GROUP}")
            for key in STAGE_KEYS:
                expect(page.get_by_text(key, exact=True).first).to_be_visible(timeout=60_000)
            page.screenshot(path=ARTIFACTS / "asset-graph.png")

            page.goto(f"{dagster_dev.url}/runs/{run_id}")
            expect(page.get_by_text("Success", exact=True).first).to_be_visible(timeout=60_000)
            expect(page.get_by_text("partition: 2023-01").first).to_be_visible()
            expect(page.get_by_text("RUN_SUCCESS").first).to_be_visible(timeout=60_000)
            page.wait_for_timeout(3000)  # the run's timeline draws its steps one by one
            page.screenshot(path=ARTIFACTS / "run.png")

            # The asset's page: its latest materialization links the executed notebook, and
            # one click opens it (the UI's own notebook page, in a new tab).
            page.goto(f"{dagster_dev.url}/assets/validate")
            link = page.get_by_role("link", name="/notebook?path=").first
            expect(link).to_be_visible(timeout=60_000)
            page.screenshot(path=ARTIFACTS / "asset-page.png")
            with context.expect_page() as opened:
                link.click()
            notebook = opened.value
            expect(notebook.get_by_text("window 2023-01..2023-01").first).to_be_visible(
                timeout=60_000
            )
            assert "02_validate.ipynb" in notebook.url
            assert "_reconstitute_job_context" not in notebook.content()
            notebook.screenshot(path=ARTIFACTS / "executed-notebook.png")
        finally:
            context.close()
    assert (ARTIFACTS / "asset-graph.png").stat().st_size > 0


def test_two_partition_runs_launched_at_once_both_succeed_one_after_the_other(
    dagster_dev: DevServer,
) -> None:
    from dagster_graphql import DagsterGraphQLClient

    port = int(dagster_dev.url.rsplit(":", 1)[1])
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    months = ["2023-02", "2023-03"]
    run_ids = [
        client.submit_job_execution(
            JOB_NAME, repository_location_name=LOCATION, tags={"dagster/partition": month}
        )
        for month in months
    ]
    runs = [wait_for_run(dagster_dev, run_id) for run_id in run_ids]
    assert [run["status"] for run in runs] == ["SUCCESS", "SUCCESS"], dagster_dev.log_tail()
    # The run queue held one back until the other had finished: no DuckDB lock was met.
    (first, second) = sorted((run["startTime"], run["endTime"]) for run in runs)
    assert second[0] >= first[1], (first, second)
    log = dagster_dev.log.read_text(errors="replace")
    assert "is locked" not in log


BACKFILL = """mutation($params: LaunchBackfillParams!) {
    launchPartitionBackfill(backfillParams: $params) {
        __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
BACKFILL_STATUS = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill {
        status runs { runId status startTime endTime tags { key value } } } } }"""


def test_a_twelve_month_asset_backfill_runs_as_ranges_and_equals_make_run(
    dagster_dev: DevServer, shared_monthly: Path, tmp_path: Path
) -> None:
    launched = dagster_dev.graphql(
        BACKFILL,
        {
            "params": {
                "assetSelection": [{"path": [key]} for key in STAGE_KEYS],
                "partitionNames": YEAR,
                "fromFailure": False,
            }
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        backfill = dagster_dev.graphql(BACKFILL_STATUS, {"id": launched["backfillId"]})
        backfill = backfill["partitionBackfillOrError"]
        if backfill["status"] not in ("REQUESTED", "CANCELING"):
            break
        time.sleep(10)
    runs = backfill["runs"]
    assert backfill["status"] == "COMPLETED_SUCCESS", (backfill, dagster_dev.log_tail())
    # The assets' backfill policy: the months in ranges of up to MONTHS_PER_BACKFILL_RUN, one
    # run per range (a year: one run), not one run per month.
    assert len(runs) == math.ceil(len(YEAR) / MONTHS_PER_BACKFILL_RUN)
    windows = sorted(run_months({t["key"]: t["value"] for t in run["tags"]}) for run in runs)
    covered = [m for start, end in windows for m in YEAR if start <= m <= end]
    assert covered == YEAR and {run["status"] for run in runs} == {"SUCCESS"}
    # One writer at a time: each run started after the one before it had finished.
    spans = sorted((run["startTime"], run["endTime"]) for run in runs)
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))
    for start, end in windows:
        assert any(
            sorted(p.name for p in folder.glob("*.ipynb")) == [f"{s}.ipynb" for s in STAGES]
            for folder in (dagster_dev.root / "runs" / window_label(start, end)).iterdir()
        )

    # make run over the same window (one Dagster run over the 12 partitions), elsewhere.
    plain = tmp_path / "plain"
    env = {
        **os.environ,
        "HDB_WAREHOUSE_PATH": str(plain / "warehouse" / "hdb_resale.duckdb"),
        "HDB_START_MONTH": YEAR[0],
        "HDB_END_MONTH": YEAR[-1],
        "DAGSTER_HOME": str(plain / "dagster_home"),
        "HDB_DAGSTER_RUNS_DIR": str(plain / "runs"),
        "DBT_TARGET_PATH": str(plain / "dbt-target"),
    }
    completed = subprocess.run(
        [sys.executable, "-m", "classroom", "run"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "25,777 sales" in completed.stdout
    # Each stage was said as it started and ended, before the run's summary.
    summary = completed.stdout.index("): success in")
    for key in STAGE_KEYS:
        assert completed.stdout.index(f"  {key:<13} running...") < summary
        assert completed.stdout.index(f"  {key:<13} success ") < summary
    # 2023-01..03 ran twice (the tests before materialized them): still equal.
    assert mart_checksums(dagster_dev.warehouse) == mart_checksums(
        plain / "warehouse" / "hdb_resale.duckdb"
    )
