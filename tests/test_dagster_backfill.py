"""Backfills in ranges: the notebook assets' backfill policy, and a run over a range of months
with one bad delivery in it. Real notebooks, Meltano, dbt and DuckDB in a temporary instance.

The asset backfill launched from ``dagster dev`` (what the UI does) is in test_dagster_ui.py;
here the run it launches for a range is started the same way, with the range's tags.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from dagster import AssetKey, BackfillPolicy, DagsterInstance
from dagster_support import copy_months, dagster_environment, notebook_text
from test_dagster_assets import spoil_prices

from classroom.runner import execute
from dagster_orchestration.definitions import defs
from dagster_orchestration.partitions import MONTHS_PER_BACKFILL_RUN, run_months
from hdb_elt.stage_notebooks import STAGE_NAMES as STAGE_KEYS

HISTORY_MONTHS = 432  # 1990-01..2025-12, the synthetic history


def test_every_notebook_asset_backfills_in_ranges_of_the_same_size() -> None:
    graph = defs.resolve_asset_graph()
    policies = {graph.get(AssetKey(key)).backfill_policy for key in STAGE_KEYS}
    # One policy for all five: Dagster puts assets in one run only when their policies agree.
    assert policies == {BackfillPolicy.multi_run(max_partitions_per_run=MONTHS_PER_BACKFILL_RUN)}
    # A year is one run (as one make run of it); the whole history a handful, not 430.
    assert MONTHS_PER_BACKFILL_RUN >= 12
    assert math.ceil(HISTORY_MONTHS / MONTHS_PER_BACKFILL_RUN) <= 10


def test_a_range_runs_its_months_from_the_range_tags() -> None:
    tags = {
        "dagster/asset_partition_range_start": "2023-01",
        "dagster/asset_partition_range_end": "2023-03",
    }
    assert run_months(tags) == ("2023-01", "2023-03")
    assert run_months({"dagster/partition": "2023-02"}) == ("2023-02", "2023-02")


@pytest.mark.slow
def test_a_bad_month_in_a_range_fails_its_run_and_the_notebook_names_it(
    shared_monthly: Path, tmp_path: Path
) -> None:
    months = ["2023-01", "2023-02", "2023-03"]
    data = copy_months(shared_monthly, tmp_path / "deliveries", months)
    bad = data / "resale-flat-prices-2023-02.csv"
    spoil_prices(bad)
    with (
        dagster_environment(tmp_path, data) as env,
        DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance,
    ):
        # The run an asset backfill launches for this range: one run, the range in its tags.
        outcome = execute(months[0], months[-1], instance)
        runs = instance.get_runs()
        assert len(runs) == 1
        assert run_months(runs[0].tags) == (months[0], months[-1])
        assert not outcome.success
        assert [(s.step, s.status) for s in outcome.steps][:3] == [
            ("extract_load", "success"),
            ("validate", "failure"),
            ("transform", "skipped"),
        ]
        assert outcome.window == "2023-01..2023-03"
        assert "2023-02" in outcome.failure and "quarantine_threshold" in outcome.failure
        # The failed run's recorded notebook names the bad month's file, rows and rule.
        failed = outcome.notebooks / "02_validate.ipynb"
        text = notebook_text(failed)
        assert "ValidationBlocked" in text and "quarantine_threshold" in text
        rule = "quarantine_threshold"
        named = [line for line in text.splitlines() if rule in line and bad.name in line]
        assert named, text[-3000:]
