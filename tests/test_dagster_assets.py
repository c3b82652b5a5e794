"""The Dagster job in this process: two months of the shared data, then a delivery the gate
stops. Real notebooks, Meltano, dbt and DuckDB; each run is recorded in a temporary instance."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance
from dagster_support import (
    copy_months,
    dagster_environment,
    fact_counts,
    file_counts,
    mart_checksums,
    notebook_text,
)

from classroom.runner import RunOutcome, StepOutcome, describe, execute
from dagster_orchestration.constants import records_dir
from dagster_orchestration.stages.validate import blocking_rules
from hdb_elt.settings import stage_settings
from hdb_elt.stage_notebooks import STAGE_NAMES as STAGE_KEYS
from hdb_elt.stage_notebooks import STAGES

pytestmark = pytest.mark.slow

MONTHS = ["2023-01", "2023-02"]


@pytest.fixture(scope="module")
def two_months(shared_monthly: Path, tmp_path_factory: pytest.TempPathFactory):
    """Materialize every stage for 2023-01, then 2023-02: one run per partition."""
    root = tmp_path_factory.mktemp("dagster")
    data = copy_months(shared_monthly, root / "deliveries", MONTHS)
    with (
        dagster_environment(root, data) as env,
        DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance,
    ):
        outcomes = {month: execute(month, month, instance) for month in MONTHS}
        yield instance, outcomes, data, Path(env["HDB_WAREHOUSE_PATH"])


def test_every_stage_of_each_month_materializes_and_passes_its_checks(two_months) -> None:
    instance, outcomes, data, warehouse = two_months
    for outcome in outcomes.values():
        assert outcome.success, outcome.failure
        assert [(s.step, s.status) for s in outcome.steps] == [(k, "success") for k in STAGE_KEYS]
        assert len(outcome.checks) == 6 and all(outcome.checks.values()), outcome.checks
    for key in STAGE_KEYS:
        assert instance.get_materialized_partitions(AssetKey(key)) == set(MONTHS)
    assert fact_counts(warehouse) == file_counts(data)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        validated = con.execute("select distinct month from audit.validation_results").fetchall()
    assert sorted(m for (m,) in validated) == MONTHS


def test_each_run_keeps_its_executed_notebooks_carrying_its_month(two_months) -> None:
    outcomes = two_months[1]
    for month, outcome in outcomes.items():
        folder: Path = outcome.notebooks
        assert folder.parent == records_dir() / month
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            f"{stage}{suffix}" for stage in STAGES for suffix in (".html", ".ipynb")
        )
        for stage in STAGES:
            text = notebook_text(folder / f"{stage}.ipynb")
            assert f"start_month = '{month}'" in text and f"end_month = '{month}'" in text
            assert f"window {month}..{month}" in text
        assert f"{month}" in (folder / "05_report.html").read_text(encoding="utf-8")


def materialization_metadata(instance, key: str, month: str) -> dict:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(key), asset_partitions=[month]), limit=1
    ).records
    return records[0].asset_materialization.metadata


def test_the_materializations_link_their_notebook_and_say_what_the_stage_did(two_months) -> None:
    instance, outcomes, data, _ = two_months
    counts = file_counts(data)
    for month, outcome in outcomes.items():
        extract = materialization_metadata(instance, "extract_load", month)
        assert extract["Executed notebook"].value == str(
            outcome.notebooks / "01_extract_load.ipynb"
        )
        assert extract["Notebook as HTML"].value.endswith("01_extract_load.html")
        assert extract["rows"].value == counts[month]
        assert len(extract["load id"].value) == 32
        assert extract["source"].value == f"the folder {data}/"
        assert extract["warnings"].value == "none"  # the month's delivery was there
        validate = materialization_metadata(instance, "validate", month)
        assert validate["failing rules"].value == "none"
        transform = materialization_metadata(instance, "transform", month)
        assert transform["rows"].value == counts[month]
        assert "| town" in transform["preview of marts.agg_monthly_town_prices (busiest)"].value
        test = materialization_metadata(instance, "test", month)
        assert "pass" in test["tests"].value
        report = materialization_metadata(instance, "report", month)
        assert report["chart"].value.startswith("![Resale prices by flat type](data:image/png;")
        assert report["long run"].value.startswith("![Median price per sqm by region](data:")
        assert "resale" in report["summary"].value.lower()


def spoil_prices(path: Path, every: int = 20) -> None:
    """Make every ``every``-th sale's price 1 SGD: implausible (quarantined) and, at 5% of the
    month, over the 1% threshold, a blocking failure. The tap accepts it: it is a number."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for index in range(1, len(lines), every):
        fields = lines[index].split(",")
        lines[index] = ",".join([*fields[:-1], "1"])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_a_delivery_failing_a_blocking_rule_stops_validation_and_everything_after_it(
    two_months,
) -> None:
    instance, _, data, warehouse = two_months
    before = mart_checksums(warehouse)
    spoil_prices(data / "resale-flat-prices-2023-01.csv")

    outcome: RunOutcome = execute("2023-01", "2023-01", instance)

    assert not outcome.success
    assert [(s.step, s.status) for s in outcome.steps] == [
        ("extract_load", "success"),
        ("validate", "failure"),
        ("transform", "skipped"),
        ("test", "skipped"),
        ("report", "skipped"),
    ]
    assert "quarantine_threshold" in outcome.failure and "2023-01" in outcome.failure
    assert mart_checksums(warehouse) == before
    # The failed notebook is kept with the run's other notebooks, linked from the failure.
    failed = outcome.notebooks / "02_validate.ipynb"
    assert "ValidationBlocked" in notebook_text(failed) and failed.with_suffix(".html").exists()
    assert str(failed) in outcome.failure
    failure = next(
        e
        for e in instance.all_logs(outcome.run_id)
        if e.dagster_event and e.dagster_event.is_step_failure
    )
    metadata = failure.dagster_event.step_failure_data.user_failure_data.metadata
    assert metadata["Executed notebook"].value == str(failed)
    # The blocking check reads the same verdict from the audit tables.
    window = stage_settings("2023-01", "2023-01", warehouse, data)
    result = blocking_rules(window)
    assert not result.passed and "quarantine_threshold" in result.metadata["failing rules"].value


def test_make_runs_summary_repeats_the_extract_loads_warnings(tmp_path: Path) -> None:
    outcome = RunOutcome(
        "ad3ad2e4" * 4, "2023-11..2024-01", True, 40.0, tmp_path,
        steps=[StepOutcome("extract_load", "success", 8.2),
               StepOutcome("validate", "success", 4.9)],
        warnings={"extract_load": ["No delivery for 2024-01 in data/snapshot, so nothing of it "
                                   "is loaded (rule: every month of the window has a delivery)"]},
    )  # fmt: skip
    lines: list[str] = []
    describe(outcome, lines.append)
    assert lines[1].startswith("  extract_load  success")
    assert lines[2] == (
        "      warning: No delivery for 2024-01 in data/snapshot, so nothing of it is loaded "
        "(rule: every month of the window has a delivery)"
    )
    assert lines[3].startswith("  validate")
