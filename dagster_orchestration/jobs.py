"""The job: the five stages of one month (or a range of months), in order, in one process."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from dagster_orchestration.constants import GROUP, JOB_NAME

monthly_pipeline = define_asset_job(
    JOB_NAME,
    selection=AssetSelection.groups(GROUP),
    description="Extract-load, validate, transform, test and report one month, in that order; "
    "a stage runs only if the one before it (and its blocking checks) succeeded.",
)
