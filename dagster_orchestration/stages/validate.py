"""Stage 2: validate (pandera), the data-quality gate, and its results as asset checks."""

# No `from __future__ import annotations` here: Dagster reads the types of a check's or
# sensor's parameters (its context, its resources) when it is defined.

from typing import Any

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    Field,
    MetadataValue,
    asset_check,
)

from dagster_orchestration.dagstermill_assets import stage_asset
from dagster_orchestration.metadata import check_settings, markdown_table
from dagster_orchestration.resources import HdbSettings
from dagster_orchestration.stages.extract_load import extract_load, latest_deliveries
from hdb_elt.settings import Settings
from hdb_elt.validation import DEFAULT_MAX_QUARANTINE_FRACTION
from hdb_elt.warehouse import (
    LATEST_DELIVERIES,
    REJECTED_DELIVERIES,
    ensure_latest_deliveries,
    query_df,
)

ROW_LEVEL = ("quarantine", "warning")


def window_results(settings: Settings) -> pd.DataFrame:
    """``audit.validation_results`` of the gate's latest verdict on each month of the window:
    the latest accepted delivery (``raw.latest_deliveries``), and a delivery the gate rejected
    since that one was last validated (so a blocked run's checks show the rejection, and the
    next run that passes on the accepted delivery no longer does)."""
    ensure_latest_deliveries(settings.warehouse_path)
    return query_df(
        settings.warehouse_path,
        f"""with accepted as (
                select distinct month, _load_id from {LATEST_DELIVERIES}
                where month between $1 and $2
            ),
            last_validated as (
                select a.month, max(v.validated_at) as validated_at
                from accepted a
                join audit.validation_results v on v._load_id = a._load_id and v.month = a.month
                group by a.month
            ),
            shown as (
                select month, _load_id from accepted
                union
                select r.month, r._load_id from {REJECTED_DELIVERIES} r
                left join last_validated l on l.month = r.month
                where r.month between $1 and $2
                    and (l.validated_at is null or r.rejected_at >= l.validated_at)
            )
            select v.month, v.rule, v.severity, v.status, v.failing_rows, v.checked_rows
            from audit.validation_results v
            join shown s on v._load_id = s._load_id and v.month is not distinct from s.month
            order by v.month, v.severity, v.rule""",
        [str(settings.start_month), str(settings.end_month)],
    )


def metadata(settings: Settings) -> dict[str, Any]:
    results = window_results(settings)
    failing = results[results["status"].isin(["fail", "warn"])]
    quarantined = results.loc[results["severity"] == "quarantine", "failing_rows"].sum()
    return {
        "rows checked": MetadataValue.int(
            int(results.groupby("month")["checked_rows"].max().sum())
        ),
        "failing rules": MetadataValue.text(", ".join(sorted(set(failing["rule"]))) or "none"),
        "quarantined rows": MetadataValue.int(int(quarantined)),
        "rule results": markdown_table(failing if not failing.empty else results, rows=40),
    }


validate = stage_asset(
    "02_validate",
    deps=[extract_load],
    tool="pandera",
    metadata=metadata,
    config_schema={
        "max_quarantine_fraction": Field(
            float,
            default_value=DEFAULT_MAX_QUARANTINE_FRACTION,
            description="More than this share of a month's rows quarantined blocks the month.",
        )
    },
)


def blocking_rules(window: Settings) -> AssetCheckResult:
    """Passes when no blocking rule failed and every month with a delivery was validated."""
    results = window_results(window)
    blocking = results[(results["severity"] == "blocking") & (results["status"] == "fail")]
    delivered = set(latest_deliveries(window)["month"])
    not_validated = sorted(delivered - set(results["month"].dropna()))
    return AssetCheckResult(
        passed=blocking.empty and not not_validated,
        metadata={
            "failing rules": MetadataValue.text(", ".join(sorted(set(blocking["rule"]))) or "none"),
            "months not validated": MetadataValue.text(", ".join(not_validated) or "none"),
            "blocking rules": markdown_table(results[results["severity"] == "blocking"]),
        },
    )


def row_rules(window: Settings) -> AssetCheckResult:
    """Warns when row-level rules set rows aside (quarantine) or flagged them (warning)."""
    results = window_results(window)
    row_level = results[results["severity"].isin(ROW_LEVEL)]
    flagged = row_level[row_level["failing_rows"] > 0]
    quarantined = row_level.loc[row_level["severity"] == "quarantine", "failing_rows"].sum()
    return AssetCheckResult(
        passed=flagged.empty,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "quarantined rows": MetadataValue.int(int(quarantined)),
            "rules with failing rows": markdown_table(flagged),
        },
    )


# The checks below look alike on purpose: each is Dagster's decorated function over a plain
# one that takes the run's settings (testable without Dagster).
@asset_check(
    asset=validate,
    blocking=True,
    description="No blocking rule failed and every month with a delivery was validated "
    "(audit.validation_results of the latest accepted delivery of each month, and of a "
    "delivery rejected since).",
)
def blocking_rules_pass(
    context: AssetCheckExecutionContext, settings: HdbSettings
) -> AssetCheckResult:
    return blocking_rules(check_settings(context, settings))


@asset_check(
    asset=validate,
    description="Rows set aside (quarantine) or flagged (warning) by row-level rules; "
    "the run goes on.",
)
def row_level_rules(context: AssetCheckExecutionContext, settings: HdbSettings) -> AssetCheckResult:
    return row_rules(check_settings(context, settings))
