"""Stage 4: test (dbt's data and unit tests, reconciliation), its outcomes as asset checks.

The test notebook runs ``dbt test``, which writes its artifacts into a folder of its own; the
checks read the newest folder holding a ``dbt test`` of this run's window, and refuse results
written before this run started. Runs of other months may run dbt at the same time (a class's
run queue starts several at once), each in its own folder, so a check never reads another
run's tests.
"""

# No `from __future__ import annotations` here: Dagster reads the types of a check's or
# sensor's parameters (its context, its resources) when it is defined.

import json
from datetime import datetime
from typing import Any

import pandas as pd
from dagster import AssetCheckExecutionContext, AssetCheckResult, MetadataValue, asset_check

from dagster_orchestration.dagstermill_assets import stage_asset
from dagster_orchestration.metadata import check_settings, markdown_table
from dagster_orchestration.resources import HdbSettings
from dagster_orchestration.stages.transform import transform
from hdb_elt.settings import Settings
from hdb_elt.test import blocks_the_pipeline, pass_fail_table, reconciliation, tested_window
from hdb_elt.transform import latest_run_target


class NoTestResults(RuntimeError):
    """dbt's last results are not a ``dbt test`` of the window (or are older than the run)."""


def window_test_results(settings: Settings, not_before: float | None = None) -> pd.DataFrame:
    """The pass/fail table of the newest ``dbt test`` of this window (written after
    ``not_before``, a POSIX time); else :class:`NoTestResults` saying what was found."""
    wanted = str(settings.start_month), str(settings.end_month)
    target = latest_run_target(which="test", window=wanted)
    if target is None or not (target / "manifest.json").is_file():
        raise NoTestResults("dbt has no results yet: the test stage did not run.")
    run_results = json.loads((target / "run_results.json").read_text())
    manifest = json.loads((target / "manifest.json").read_text())
    args = run_results.get("args", {})
    tested = tested_window(run_results)
    wanted = str(settings.start_month), str(settings.end_month)
    generated = datetime.fromisoformat(
        run_results["metadata"]["generated_at"].replace("Z", "+00:00")
    )
    if args.get("which") != "test" or tested != wanted:
        raise NoTestResults(
            f"dbt's last results are `dbt {args.get('which')}` of {tested[0]}..{tested[1]}, "
            f"not the tests of {wanted[0]}..{wanted[1]}."
        )
    if not_before is not None and generated.timestamp() < not_before:
        raise NoTestResults(f"dbt's last test results ({generated}) are older than this run.")
    return pass_fail_table(run_results["results"], manifest)


def _counts(tests: pd.DataFrame) -> str:
    return ", ".join(
        f"{n} {status}" for status, n in sorted(tests["status"].value_counts().items())
    )


def metadata(settings: Settings) -> dict[str, Any]:
    tests = window_test_results(settings)
    recon = reconciliation(settings.warehouse_path, settings.start_month, settings.end_month)
    return {
        "tests": MetadataValue.text(f"{len(tests)} ({_counts(tests)})"),
        "tests not passing": markdown_table(tests[tests["status"] != "pass"].drop(columns="name")),
        "reconciliation": markdown_table(recon),
    }


test = stage_asset("04_test", deps=[transform], tool="dbt", metadata=metadata)


def dbt_tests(window: Settings, kind: str, not_before: float | None = None) -> AssetCheckResult:
    """Passes when every dbt test of ``kind`` ("data" or "unit") of the window's last
    ``dbt test`` passed, or failed with severity warn; fails if there are none to read."""
    try:
        tests = window_test_results(window, not_before=not_before)
    except NoTestResults as missing:
        return AssetCheckResult(passed=False, metadata={"why": MetadataValue.text(str(missing))})
    tests = tests[tests["kind"] == kind]
    # Which failures block is the test stage's own rule (an error-severity failure, or a test
    # that could not run), read from hdb_elt.test so the check and the notebook agree.
    blocking = tests[blocks_the_pipeline(tests)]
    return AssetCheckResult(
        passed=blocking.empty and not tests.empty,
        metadata={
            "tests": MetadataValue.text(f"{len(tests)} ({_counts(tests) or 'none ran'})"),
            "failing": markdown_table(blocking.drop(columns="name")),
        },
    )


def _run_started(context: AssetCheckExecutionContext) -> float | None:
    record = context.instance.get_run_record_by_id(context.run.run_id)
    return record.create_timestamp.timestamp() if record else None


# The checks below look alike on purpose: each is Dagster's decorated function over a plain
# one that takes the run's settings (testable without Dagster).
@asset_check(
    asset=test,
    blocking=True,
    description="dbt's data tests (keys, ranges, relationships, reconciliation) pass.",
)
def dbt_data_tests(context: AssetCheckExecutionContext, settings: HdbSettings) -> AssetCheckResult:
    return dbt_tests(check_settings(context, settings), "data", _run_started(context))


@asset_check(
    asset=test,
    blocking=True,
    description="dbt's unit tests (lease parser, storey split, surrogate key) pass.",
)
def dbt_unit_tests(context: AssetCheckExecutionContext, settings: HdbSettings) -> AssetCheckResult:
    return dbt_tests(check_settings(context, settings), "unit", _run_started(context))
