"""Notebook 06's helpers (classroom.orchestration_tour): the code location as Dagster holds it.

The sandbox's runs are exercised by ``pytest --nbval notebooks/06_orchestrate.ipynb``."""

from __future__ import annotations

from classroom.orchestration_tour import asset_graph, assets_table, automation_table, checks_table
from hdb_elt.stage_notebooks import STAGES


def test_the_assets_are_the_stage_notebooks_in_order() -> None:
    assets = assets_table()
    assert assets["asset"].tolist() == [stage.split("_", 1)[1] for stage in STAGES]
    assert assets["runs the notebook"].tolist() == [f"{stage}.ipynb" for stage in STAGES]
    assert assets["after"].tolist() == ["(first)", *assets["asset"].tolist()[:-1]]
    assert set(assets["partitions"]) == {"monthly from 2017-01"}


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
