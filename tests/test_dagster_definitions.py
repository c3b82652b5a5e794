"""The Dagster code location without running a notebook: the graph, partitions, parameters,
records, the schedule, the sensor, the instance settings and the checks' readers."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
import warnings
from datetime import date, datetime
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

import nbformat
import pandas as pd
import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    Definitions,
    MonthlyPartitionsDefinition,
    SensorResult,
    asset,
    build_schedule_context,
    build_sensor_context,
    materialize,
)

from classroom.runner import partition_tags, windows
from dagster_orchestration import dagstermill_assets, records
from dagster_orchestration.constants import DAGSTER_YAML, GROUP, JOB_NAME, SCHEDULE_CRON
from dagster_orchestration.definitions import defs
from dagster_orchestration.home import prepare_home
from dagster_orchestration.partitions import is_partition, monthly_partitions, run_months
from dagster_orchestration.resources import HdbSettings
from dagster_orchestration.schedules import monthly_refresh, scheduled_months
from dagster_orchestration.sensors import new_deliveries
from dagster_orchestration.stages.test import NoTestResults, window_test_results
from dagster_orchestration.stages.validate import blocking_rules
from hdb_elt.months import Month
from hdb_elt.settings import REPO_ROOT, SettingsError, stage_settings
from hdb_elt.stage_notebooks import STAGES, stage_path
from hdb_elt.test import TESTED_WINDOW
from hdb_elt.transform import new_run_target
from hdb_elt.validation import read_deliveries, record_results, validate_load
from hdb_elt.warehouse import connect, ensure_warehouse

# Written out, not read from hdb_elt.stage_notebooks: the asset keys a user sees, pinned here.
STAGE_KEYS = ["extract_load", "validate", "transform", "test", "report"]
SGT = ZoneInfo("Asia/Singapore")
HEADER = (
    "month,town,flat_type,block,street_name,storey_range,floor_area_sqm,flat_model,"
    "lease_commence_date,remaining_lease,resale_price"
)


def test_the_definitions_load_and_validate() -> None:
    Definitions.validate_loadable(defs)
    assert defs.resolve_job_def(JOB_NAME).executor_def.name == "in_process"


def test_plain_dagster_finds_the_code_location_through_pyproject() -> None:
    """`dagster dev` with no -m reads [tool.dagster] in pyproject.toml; so does this command."""
    completed = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "definitions", "validate"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "hdb_elt_workbook" in completed.stdout + completed.stderr


def test_the_asset_graph_is_the_five_stages_in_order_partitioned_monthly() -> None:
    graph = defs.resolve_asset_graph()
    assert {key.to_user_string() for key in graph.get_all_asset_keys()} == set(STAGE_KEYS)
    for before, after in itertools.pairwise(STAGE_KEYS):
        assert graph.get(AssetKey(after)).parent_keys == {AssetKey(before)}
    assert graph.get(AssetKey("extract_load")).parent_keys == set()
    for key, stage in zip(STAGE_KEYS, STAGES, strict=True):
        node = graph.get(AssetKey(key))
        assert node.group_name == GROUP
        assert isinstance(node.partitions_def, MonthlyPartitionsDefinition)
        assert node.owners == ["team:hdb-elt-workbook"] and node.tags["tool"]
        assert node.description.startswith(stage.split("_")[0].lstrip("0") + " · ")
    for stage in STAGES:  # the very notebooks learners open, no copies
        assets_def = defs.resolve_assets_def(dagstermill_assets.asset_name(stage))
        assert assets_def.op.tags["notebook_path"] == str(stage_path(stage))
        assert assets_def.op.tags["dagster/compute_kind"] == "ipynb"  # what the UI shows


def test_the_checks_block_what_comes_after_them() -> None:
    specs = {
        (spec.asset_key.to_user_string(), spec.name): spec.blocking
        for checks in defs.asset_checks
        for spec in checks.check_specs
    }
    assert specs == {
        ("validate", "blocking_rules_pass"): True,
        ("validate", "row_level_rules"): False,
        ("transform", "fact_reconciles_with_raw"): True,
        ("transform", "transaction_ids_unique"): True,
        ("test", "dbt_data_tests"): True,
        ("test", "dbt_unit_tests"): True,
    }


def test_monthly_partitions_run_from_the_datasets_first_month_to_this_one() -> None:
    keys = monthly_partitions.get_partition_keys()
    this_month = datetime.now(SGT).strftime("%Y-%m")
    assert keys[0] == "1990-01" and keys[-1] == this_month
    assert "2023-07" in keys and len(keys) == len(set(keys))
    # Every month of 35 years is a key: a backfill of any range finds its partitions.
    assert keys[: (2023 - 1990 + 1) * 12] == [
        f"{year}-{month:02d}" for year in range(1990, 2024) for month in range(1, 13)
    ]
    assert is_partition("1990-01") and not is_partition("1989-12")
    assert is_partition("2024-02", today=date(2024, 2, 1))
    assert not is_partition("2024-03", today=date(2024, 2, 29))
    assert not is_partition("2023-13")


def test_a_run_gets_its_months_from_its_partition_tags() -> None:
    assert run_months(partition_tags("2023-07", "2023-07")) == ("2023-07", "2023-07")
    assert run_months(partition_tags("2023-01", "2023-12")) == ("2023-01", "2023-12")
    with pytest.raises(ValueError, match="no partition"):
        run_months({})


def test_make_run_refuses_months_that_are_not_partitions() -> None:
    this_month = datetime.now(SGT).date().replace(day=1)
    later = [Month.of(this_month).shift(n) for n in (1, 2)]
    settings = stage_settings(str(later[0]), str(later[1]), "/tmp/w.duckdb", None)
    with pytest.raises(SettingsError, match=f"{later[0]}, {later[1]}: not a monthly partition"):
        windows(settings, per_month=False)
    settings = stage_settings("1990-01", "1995-03", "/tmp/w.duckdb", None)
    assert windows(settings, per_month=False) == [("1990-01", "1995-03")]
    settings = stage_settings("2023-01", "2023-03", "/tmp/w.duckdb", None)
    assert windows(settings, per_month=False) == [("2023-01", "2023-03")]
    assert windows(settings, per_month=True)[1] == ("2023-02", "2023-02")


def test_the_notebook_keeps_its_parameters_cell_and_gets_the_runs_values_after_it() -> None:
    values = {"start_month": "2023-07", "end_month": "2023-07", "max_quarantine_fraction": 0.05}
    source = stage_path("02_validate")
    prepared = dagstermill_assets.with_parameters(source, values, "run abcd1234, 2023-07")
    original = nbformat.read(source, as_version=4)
    tags = [cell.metadata.get("tags", []) for cell in prepared.cells]
    first = tags.index(["parameters"])
    # dagstermill replaces the first cell tagged "parameters" (the empty placeholder) with the
    # cell that rebuilds its context; the notebook's own defaults and then ours follow.
    assert prepared.cells[first].source == ""
    assert prepared.cells[first + 1].source == next(
        c.source for c in original.cells if "parameters" in c.metadata.get("tags", [])
    )
    assert tags[first + 2] == [dagstermill_assets.VALUES_TAG]
    assert "start_month = '2023-07'" in prepared.cells[first + 2].source
    assert "max_quarantine_fraction = 0.05" in prepared.cells[first + 2].source
    assert len(prepared.cells) == len(original.cells) + 2
    code = "\n".join(c.source for c in prepared.cells[first + 1 : first + 3])
    namespace: dict = {}
    exec(code, namespace)  # the values win over the defaults
    assert namespace["start_month"] == "2023-07" and namespace["max_quarantine_fraction"] == 0.05


def test_the_settings_resource_hands_the_notebook_the_environments_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "in").mkdir()
    monkeypatch.setenv("HDB_WAREHOUSE_PATH", str(tmp_path / "w.duckdb"))
    monkeypatch.setenv("HDB_RESALE_DATA_DIR", str(tmp_path / "in"))
    parameters = HdbSettings().notebook_parameters("2023-02", "2023-03")
    assert parameters == {
        "start_month": "2023-02",
        "end_month": "2023-03",
        "warehouse_path": str(tmp_path / "w.duckdb"),
        "data_dir": str(tmp_path / "in"),
    }
    elsewhere = HdbSettings(warehouse_path=str(tmp_path / "other.duckdb"))
    assert elsewhere.notebook_parameters("2023-02", "2023-02")["warehouse_path"].endswith(
        "other.duckdb"
    )
    assert HdbSettings().delivery_dir() == tmp_path / "in"


def test_a_kept_notebook_has_its_html_and_links_for_the_ui(tmp_path: Path) -> None:
    content = nbformat.writes(
        nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Hi")])
    )
    folder = tmp_path / "2023-07" / "20240101T000000Z-abcd1234"
    notebook, html = records.keep_notebook(content.encode(), folder, "02_validate")
    assert notebook == folder / "02_validate.ipynb" and notebook.read_text() == content
    assert html == folder / "02_validate.html" and 'id="Hi">Hi' in html.read_text()
    metadata = records.record_metadata(notebook, html)
    assert metadata["Executed notebook"].value == str(notebook)
    assert "Open the executed notebook" not in metadata  # in process: no UI to open it in
    metadata = records.record_metadata(notebook, html, "dagster_orchestration.definitions")
    assert metadata["Open the executed notebook"].value == (
        f"/notebook?path={quote(str(notebook), safe='')}"
        "&repoLocName=dagster_orchestration.definitions"
    )
    assert records.window_label("2023-01", "2023-12") == "2023-01..2023-12"


def test_a_kept_notebook_starts_with_the_learners_cells(tmp_path: Path) -> None:
    plumbing = "context = dagstermill._reconstitute_job_context(**{'job_name': 'x'})"
    log = "RESOURCE_INIT_STARTED - Starting initialization of resources [settings]."
    context_cell = nbformat.v4.new_code_cell(
        plumbing,
        metadata={"tags": ["injected-parameters"]},
        outputs=[nbformat.v4.new_output("stream", name="stderr", text=log)],
    )
    cells = [
        nbformat.v4.new_markdown_cell("# Validate"),
        context_cell,
        nbformat.v4.new_code_cell("start_month = '2023-07'"),
    ]
    content = nbformat.writes(nbformat.v4.new_notebook(cells=cells))
    notebook, html = records.keep_notebook(content.encode(), tmp_path, "02_validate")
    kept = nbformat.read(notebook, as_version=4)
    folded = kept.cells[1]
    assert folded.source == records.FOLDED_SOURCE and folded.outputs == []
    assert folded.metadata["dagstermill"]["source"] == plumbing  # kept in the file
    assert log in folded.metadata["dagstermill"]["outputs"][0]["text"]
    assert folded.metadata["jupyter"] == {"source_hidden": True, "outputs_hidden": True}
    page = html.read_text()
    assert "_reconstitute_job_context" not in page and "RESOURCE_INIT_STARTED" not in page
    assert "start_month" in page
    # Keeping it again (a failed step's notebook is kept by the step) changes nothing.
    assert records.fold_context_cell(notebook.read_bytes()) == notebook.read_bytes()


def test_the_schedule_reruns_the_previous_and_the_current_month() -> None:
    assert SCHEDULE_CRON == "0 6 28 * *"
    tick = datetime(2024, 3, 28, 6, 0, tzinfo=SGT)
    requests = list(monthly_refresh(build_schedule_context(scheduled_execution_time=tick)))
    assert [r.partition_key for r in requests] == ["2024-02", "2024-03"]
    assert [r.run_key for r in requests] == ["2024-02@2024-03-28", "2024-03@2024-03-28"]
    assert scheduled_months(date(2024, 1, 28)) == ["2023-12", "2024-01"]


def write_delivery(folder: Path, name: str, rows: list[tuple[str, str]]) -> Path:
    """A small delivery: one line per (month, price)."""
    lines = [HEADER] + [
        f"{month},ANG MO KIO,3 ROOM,101,ANG MO KIO AVE 3,04 TO 06,67,New Generation,1978,"
        f"54 years 02 months,{price}"
        for month, price in rows
    ]
    path = folder / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # Written a while ago, as a delivery that has finished arriving (see the settling test).
    old = time.time() - 3600
    os.utime(path, (old, old))
    return path


def tick(folder: Path, cursor: str | None) -> SensorResult:
    context = build_sensor_context(
        cursor=cursor, resources={"settings": HdbSettings(data_dir=str(folder))}
    )
    result = new_deliveries(context)
    assert isinstance(result, SensorResult)
    return result


def test_the_sensor_starts_one_run_per_new_month_and_none_for_an_unchanged_file(
    tmp_path: Path,
) -> None:
    write_delivery(tmp_path, "resale-2023-01.csv", [("2023-01", "400000")] * 3)
    write_delivery(tmp_path, "resale-2023-02.csv", [("2023-02", "410000")])
    first = tick(tmp_path, None)
    assert sorted(r.partition_key for r in first.run_requests) == ["2023-01", "2023-02"]
    seen = json.loads(first.cursor)  # the cursor says what the sensor saw
    assert set(seen) == {"resale-2023-01.csv", "resale-2023-02.csv"}
    assert all(len(entry["sha256"]) == 64 for entry in seen.values())

    again = tick(tmp_path, first.cursor)
    assert (
        again.run_requests == [] and "No new or changed delivery" in again.skip_reason.skip_message
    )

    path = write_delivery(tmp_path, "resale-2023-02.csv", [("2023-02", "420000")])
    changed = tick(tmp_path, again.cursor)
    assert [r.partition_key for r in changed.run_requests] == ["2023-02"]
    (key,) = [r.run_key for r in changed.run_requests]
    assert key != next(r.run_key for r in first.run_requests if r.partition_key == "2023-02")
    assert json.loads(changed.cursor)["resale-2023-02.csv"]["sha256"][:16] in key

    path.touch()  # a new modification time, the same content: no run
    assert tick(tmp_path, changed.cursor).run_requests == []


def test_the_sensor_waits_until_a_file_being_written_has_stopped_changing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "Resale Flat Prices 2023-03.CSV"
    path.write_text(HEADER + "\n2023-03,ANG MO KIO,3 ROOM,1,", encoding="utf-8")  # half copied
    first = tick(tmp_path, None)
    assert first.run_requests == [] and "1 still changing" in first.skip_reason.skip_message
    with path.open("a", encoding="utf-8") as handle:  # the copy goes on between ticks
        handle.write("A,AVE 3,04 TO 06,67,New Generation,1978,54 years 02 months,400000\n")
    os.utime(path, (time.time() + 1, time.time() + 1))
    second = tick(tmp_path, first.cursor)
    assert second.run_requests == []
    third = tick(tmp_path, second.cursor)  # the same size and time on two ticks: settled
    assert [r.partition_key for r in third.run_requests] == ["2023-03"]
    assert tick(tmp_path, third.cursor).run_requests == []


def test_the_sensor_starts_a_run_for_each_month_a_file_holds_and_skips_non_partitions(
    tmp_path: Path,
) -> None:
    rows = [
        ("2023-05", "1"),
        ("2023-06", "2"),
        ("2023-06", "3"),
        ("1989-12", "4"),
        ("2023-13", "5"),
    ]
    write_delivery(tmp_path, "several.csv", rows)
    result = tick(tmp_path, None)
    assert sorted(r.partition_key for r in result.run_requests) == ["2023-05", "2023-06"]
    assert all("several.csv" in r.run_key for r in result.run_requests)


def test_the_sensor_skips_when_the_pipeline_reads_the_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(HdbSettings, "delivery_dir", lambda self: None)
    context = build_sensor_context(resources={"settings": HdbSettings()})
    assert "data.gov.sg API" in new_deliveries(context).skip_message


def test_the_instance_runs_one_warehouse_writer_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = prepare_home(tmp_path / "home")
    assert (home / "dagster.yaml").read_bytes() == DAGSTER_YAML.read_bytes()
    with DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 1


def test_a_dagster_home_of_your_own_keeps_its_settings(tmp_path: Path) -> None:
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepare_home(tmp_path)
    assert (tmp_path / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"
    assert "not this project's dagster.yaml" in str(caught[0].message)


def dbt_artifacts(target: Path, which: str, window: tuple[str, str], status: str) -> None:
    """A minimal run_results.json and manifest.json with one data test and one unit test, in
    a new run folder under ``target`` as a dbt run leaves them."""
    target = new_run_target(target)
    nodes = {
        "test.p.unique_fct_id": {
            "name": "unique_fct_id",
            "test_metadata": {"name": "unique"},
            "config": {"severity": "ERROR"},
            "attached_node": "model.p.fct",
            "column_name": "transaction_id",
            "depends_on": {"nodes": ["model.p.fct"]},
        },
        "model.p.fct": {"name": "fct_resale_transactions"},
    }
    manifest = {
        "nodes": nodes,
        "unit_tests": {"unit_test.p.fct.lease": {"name": "lease", "model": "fct"}},
        "sources": {},
    }
    results = {
        # The window as hdb_elt.test.run_tests records it (dbt's DBT_ENV_CUSTOM_ENV_ metadata).
        "metadata": {
            "generated_at": "2024-01-01T00:00:00Z",
            "env": {TESTED_WINDOW: f"{window[0]}..{window[1]}"},
        },
        "args": {"which": which},
        "results": [
            {"unique_id": "test.p.unique_fct_id", "status": status, "failures": 2},
            {"unique_id": "unit_test.p.fct.lease", "status": "pass", "failures": 0},
        ],
    }
    (target / "manifest.json").write_text(json.dumps(manifest))
    (target / "run_results.json").write_text(json.dumps(results))


def test_the_test_checks_read_only_the_dbt_tests_of_their_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster_orchestration.stages.test import dbt_tests

    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))
    window = stage_settings("2023-07", "2023-07", tmp_path / "w.duckdb", None)
    with pytest.raises(NoTestResults, match="no results yet"):
        window_test_results(window)

    dbt_artifacts(tmp_path / "target", "test", ("2023-07", "2023-07"), "fail")
    tests = window_test_results(window)
    assert list(tests["status"]) == ["fail", "pass"]
    assert not dbt_tests(window, "data").passed  # an error-severity test failed
    assert dbt_tests(window, "unit").passed
    stale = datetime(2024, 1, 2, tzinfo=SGT).timestamp()
    assert "older than this run" in str(dbt_tests(window, "unit", stale).metadata["why"].value)

    # Newer results of other runs (another window's tests, a build, as concurrent runs of a
    # class leave them) are not this window's: the check still reads its own.
    dbt_artifacts(tmp_path / "target", "build", ("2023-08", "2023-08"), "pass")
    dbt_artifacts(tmp_path / "target", "test", ("2023-01", "2023-12"), "pass")
    assert list(window_test_results(window)["status"]) == ["fail", "pass"]
    other = stage_settings("2023-09", "2023-09", tmp_path / "w.duckdb", None)
    with pytest.raises(NoTestResults, match=r"`dbt test` of 2023-01\.\.2023-12, not the tests"):
        window_test_results(other)  # another window's tests prove nothing
    dbt_artifacts(tmp_path / "target", "test", ("2023-07", "2023-07"), "pass")
    assert dbt_tests(window, "data").passed  # the newest of this window's tests


def test_the_blocking_check_reads_the_gates_latest_verdict_on_each_month(tmp_path: Path) -> None:
    """A delivery the gate rejected fails the check until the month's accepted delivery is
    validated again (the next run, which goes through on it)."""
    warehouse = tmp_path / "w.duckdb"
    ensure_warehouse(warehouse)
    row = {
        "month": "2023-05", "town": "BEDOK", "flat_type": "4 ROOM", "street_name": "BEDOK RD",
        "storey_range": "01 TO 03", "floor_area_sqm": "90", "flat_model": "Model A",
        "lease_commence_date": "1990", "remaining_lease": "66 years", "resale_price": "500000",
    }  # fmt: skip

    def deliver(load_id: str, loaded_at: str, price: str) -> None:
        rows = pd.DataFrame([{**row, "block": str(i), "resale_price": price} for i in range(20)])
        rows = rows.assign(_source="/in/may.csv", _source_row=range(2, 22), _load_id=load_id)
        with connect(warehouse) as con:
            con.register("delivered", rows.assign(_loaded_at=datetime.fromisoformat(loaded_at)))
            con.execute("insert into raw.resale_flat_prices by name select * from delivered")

    def gate() -> None:
        record_results(warehouse, validate_load(read_deliveries(warehouse, "2023-05", "2023-05"),
                                                "2023-05", "2023-05"))  # fmt: skip

    window = stage_settings("2023-05", "2023-05", warehouse, tmp_path)
    deliver("accepted", "2024-01-01", "500000")
    gate()
    assert blocking_rules(window).passed
    deliver("rejected", "2024-02-01", "1")  # every price implausible: blocked, rejected
    gate()
    blocked = blocking_rules(window)
    assert not blocked.passed and blocked.metadata["failing rules"].value == (
        "quarantine_threshold"
    )
    gate()  # the next run validates May's accepted delivery: the rejection is behind it
    assert blocking_rules(window).passed


def test_a_run_resolves_its_settings_once_and_the_next_run_afresh(tmp_path, monkeypatch):
    seen: list[Path] = []

    @asset
    def where(settings: HdbSettings) -> None:
        first = settings.for_months("2023-01", "2023-01")
        # The environment changes while the run goes on: the run keeps what it resolved.
        os.environ["HDB_WAREHOUSE_PATH"] = str(tmp_path / "changed.duckdb")
        assert settings.for_months("2023-01", "2023-01") is first
        seen.append(first.warehouse_path)

    resource = HdbSettings()
    for name in ("first", "second"):
        monkeypatch.setenv("HDB_WAREHOUSE_PATH", str(tmp_path / f"{name}.duckdb"))
        assert materialize([where], resources={"settings": resource}).success
    assert seen == [tmp_path / "first.duckdb", tmp_path / "second.duckdb"]
