"""Asset checks a learner might write in exercise 06, right and wrong, for tests/test_exercises.py.

No ``from __future__ import annotations``: Dagster reads a check's parameter types.
"""

from dagster import AssetCheckExecutionContext, AssetCheckResult, asset_check

from classroom.exercises.dagster_check import MIN_SALES
from dagster_orchestration.metadata import check_settings
from dagster_orchestration.resources import HdbSettings
from dagster_orchestration.stages.transform import transform
from dagster_orchestration.stages.validate import validate
from hdb_elt.warehouse import query_df


def counts(window) -> dict[str, int]:
    found = query_df(
        window.warehouse_path,
        "select month_key, count(*) as n from marts.fct_resale_transactions "
        "where month_key between ? and ? group by 1",
        [str(window.start_month), str(window.end_month)],
    )
    return dict(zip(found["month_key"], found["n"], strict=True))


@asset_check(asset=transform)
def enough_sales_per_month(
    context: AssetCheckExecutionContext, settings: HdbSettings
) -> AssetCheckResult:
    window = check_settings(context, settings)
    found = counts(window)
    return AssetCheckResult(
        passed=all(found.get(str(m), 0) >= MIN_SALES for m in window.months),
        metadata={"sales": str(found)},
    )


@asset_check(asset=transform)
def forgets_empty_months(
    context: AssetCheckExecutionContext, settings: HdbSettings
) -> AssetCheckResult:
    """Checks only the months the group by returns: a month with no sales slips through."""
    found = counts(check_settings(context, settings))
    return AssetCheckResult(passed=all(n >= MIN_SALES for n in found.values()))


@asset_check(asset=transform)
def always_passes(context: AssetCheckExecutionContext, settings: HdbSettings) -> AssetCheckResult:
    return AssetCheckResult(passed=True)


@asset_check(asset=validate)
def on_the_wrong_asset(
    context: AssetCheckExecutionContext, settings: HdbSettings
) -> AssetCheckResult:
    return AssetCheckResult(passed=True)


@asset_check(asset=transform, name="transaction_ids_unique")
def a_taken_name(context: AssetCheckExecutionContext, settings: HdbSettings) -> AssetCheckResult:
    return AssetCheckResult(passed=True)


@asset_check(asset=transform)
def raises(context: AssetCheckExecutionContext, settings: HdbSettings) -> AssetCheckResult:
    raise KeyError("month")
