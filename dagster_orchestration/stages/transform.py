"""Stage 3: transform (dbt build of seeds and models), and checks on what it built."""

# No `from __future__ import annotations` here: Dagster reads the types of a check's or
# sensor's parameters (its context, its resources) when it is defined.

from typing import Any

from dagster import AssetCheckExecutionContext, AssetCheckResult, MetadataValue, asset_check

from dagster_orchestration.dagstermill_assets import stage_asset
from dagster_orchestration.metadata import check_settings, markdown_table
from dagster_orchestration.resources import HdbSettings
from dagster_orchestration.stages.validate import validate
from hdb_elt.settings import Settings
from hdb_elt.test import FACT_TABLE, reconciliation
from hdb_elt.warehouse import query_df

AGGREGATE = "marts.agg_monthly_town_prices"


def months(settings: Settings) -> list[str]:
    return [str(settings.start_month), str(settings.end_month)]


def metadata(settings: Settings) -> dict[str, Any]:
    counts = query_df(
        settings.warehouse_path,
        f"""select count(*) as sales, count(distinct transaction_id) as ids,
                count(distinct month_key) as months
            from {FACT_TABLE} where month_key between ? and ?""",
        months(settings),
    )
    preview = query_df(
        settings.warehouse_path,
        f"""select month_key, town, flat_type, transactions, median_price, median_price_per_sqm
            from {AGGREGATE} where month_key between ? and ?
            order by transactions desc, month_key, town, flat_type limit 10""",
        months(settings),
    )
    return {
        "rows": MetadataValue.int(int(counts["sales"][0])),
        "months with sales": MetadataValue.int(int(counts["months"][0])),
        f"preview of {AGGREGATE} (busiest)": markdown_table(preview),
    }


transform = stage_asset("03_transform", deps=[validate], tool="dbt", metadata=metadata)


def fact_reconciles(window: Settings) -> AssetCheckResult:
    """Per month: the fact holds the latest delivery minus the quarantined rows."""
    recon = reconciliation(window.warehouse_path, window.start_month, window.end_month)
    return AssetCheckResult(
        passed=bool((recon["status"] != "mismatch").all()),
        metadata={"reconciliation": markdown_table(recon)},
    )


def unique_ids(window: Settings) -> AssetCheckResult:
    """No transaction_id appears twice among the window's sales."""
    duplicated = query_df(
        window.warehouse_path,
        f"""select transaction_id, count(*) as copies from {FACT_TABLE}
            where month_key between ? and ? group by 1 having count(*) > 1 order by 1""",
        months(window),
    )
    return AssetCheckResult(
        passed=duplicated.empty,
        metadata={
            "duplicated ids": MetadataValue.int(len(duplicated)),
            "examples": markdown_table(duplicated, rows=5),
        },
    )


# The checks below look alike on purpose: each is Dagster's decorated function over a plain
# one that takes the run's settings (testable without Dagster).
@asset_check(
    asset=transform,
    blocking=True,
    description="For each month, the fact holds the latest delivery minus the quarantined "
    "rows, no more, no less.",
)
def fact_reconciles_with_raw(
    context: AssetCheckExecutionContext, settings: HdbSettings
) -> AssetCheckResult:
    return fact_reconciles(check_settings(context, settings))


@asset_check(
    asset=transform,
    blocking=True,
    description="transaction_id is unique among the window's sales.",
)
def transaction_ids_unique(
    context: AssetCheckExecutionContext, settings: HdbSettings
) -> AssetCheckResult:
    return unique_ids(check_settings(context, settings))
