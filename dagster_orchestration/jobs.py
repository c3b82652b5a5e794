"""The job: the five stages of one month (or a range of months), in order, in one process."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job, in_process_executor

from dagster_orchestration.constants import GROUP, JOB_NAME

# In-process executor: the stages run one after the other anyway (each waits for the one
# before), so a process per step (Dagster's default) would only add start-up time; each
# notebook still runs in its own kernel.
monthly_pipeline = define_asset_job(
    JOB_NAME,
    selection=AssetSelection.groups(GROUP),
    executor_def=in_process_executor,
    description="Extract-load, validate, transform, test and report one month, in that order; "
    "a stage runs only if the one before it (and its blocking checks) succeeded.",
)
