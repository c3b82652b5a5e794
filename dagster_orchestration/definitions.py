"""The Dagster code location: `dagster dev -m dagster_orchestration.definitions`, or `make dev`."""

from __future__ import annotations

from dagster import Definitions, JobDefinition, in_process_executor

from dagster_orchestration.constants import JOB_NAME
from dagster_orchestration.dagstermill_assets import NOTEBOOK_IO_MANAGER
from dagster_orchestration.jobs import monthly_pipeline
from dagster_orchestration.resources import HdbSettings, RecordedNotebookIOManager
from dagster_orchestration.schedules import monthly_refresh
from dagster_orchestration.sensors import new_deliveries
from dagster_orchestration.stages import extract_load, report, test, transform, validate

defs = Definitions(
    assets=[
        extract_load.extract_load,
        validate.validate,
        transform.transform,
        test.test,
        report.report,
    ],
    asset_checks=[
        validate.blocking_rules_pass,
        validate.row_level_rules,
        transform.fact_reconciles_with_raw,
        transform.transaction_ids_unique,
        test.dbt_data_tests,
        test.dbt_unit_tests,
    ],
    jobs=[monthly_pipeline],
    schedules=[monthly_refresh],
    sensors=[new_deliveries],
    resources={
        "settings": HdbSettings(),
        NOTEBOOK_IO_MANAGER: RecordedNotebookIOManager(),
    },
    # The in-process executor, for the job and for runs started from the asset graph: the
    # stages run one after the other anyway (each waits for the one before), so a process per
    # step (Dagster's default) would only add start-up time; each notebook still runs in its
    # own kernel.
    executor=in_process_executor,
)


def pipeline_job() -> JobDefinition:
    """The job, for ``dagster.reconstructable`` (dagstermill needs a reconstructable job)."""
    return defs.resolve_job_def(JOB_NAME)
