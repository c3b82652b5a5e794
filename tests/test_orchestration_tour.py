"""Notebook 06's helpers (classroom.orchestration_tour): the code location as Dagster holds it.

The sandbox's runs are exercised by ``pytest --nbval notebooks/06_orchestrate.ipynb``."""

from __future__ import annotations

from pathlib import Path

from classroom.exercises.dagster_backfill import describe_run
from classroom.orchestration_tour import (
    asset_graph,
    assets_table,
    automation_table,
    checks_table,
    run_summary,
)
from classroom.runner import RunOutcome, StepOutcome
from hdb_elt.stage_notebooks import STAGES


def test_the_assets_are_the_stage_notebooks_in_order() -> None:
    assets = assets_table()
    assert assets["asset"].tolist() == [stage.split("_", 1)[1] for stage in STAGES]
    assert assets["runs the notebook"].tolist() == [f"{stage}.ipynb" for stage in STAGES]
    assert assets["after"].tolist() == ["(first)", *assets["asset"].tolist()[:-1]]
    assert set(assets["partitions"]) == {"monthly from 1990-01"}


def test_every_check_but_the_row_level_one_blocks() -> None:
    checks = checks_table().set_index("check")
    assert checks.loc["row_level_rules", "blocking"] == "no (warns)"
    assert set(checks.drop(index="row_level_rules")["blocking"]) == {"yes"}
    assert checks.loc["blocking_rules_pass", "asset"] == "validate"


def test_the_schedule_and_the_sensor_are_listed_and_the_graph_is_a_picture() -> None:
    assert automation_table()["name"].tolist() == [
        "monthly_pipeline",
        "monthly_refresh",
        "new_deliveries",
    ]
    assert asset_graph().data[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_is_summed_up_stage_by_stage_with_its_checks_and_no_timings() -> None:
    outcome = RunOutcome(
        run_id="abcd1234",
        window="2023-04",
        success=False,
        seconds=12.5,
        notebooks=Path("runs"),
        steps=[
            StepOutcome("extract_load", "success", 3.2),
            StepOutcome("validate", "failure", 1.1),
            StepOutcome("transform", "skipped"),
        ],
        checks={"validate.blocking_rules_pass": False, "validate.row_level_rules": True},
        failure="validate failed for 2023-04.\nValueError: 3 rows\nmore",
    )
    steps = [
        "  extract_load  success ",
        "  validate      failure  checks: blocking_rules_pass FAILED, row_level_rules passed",
        "  transform     skipped ",
    ]
    assert run_summary(outcome).splitlines() == [
        "Run of partition 2023-04: FAILED",
        *steps,
        "  validate failed for 2023-04.",
        "  ValueError: 3 rows",
    ]
    assert describe_run(outcome).splitlines() == [
        "2023-04: FAILED",
        *steps,
        "  validate failed for 2023-04.",
    ]
