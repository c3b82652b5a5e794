"""Names and places the Dagster code location shares, in one place."""

from __future__ import annotations

import os
from pathlib import Path

from hdb_elt.months import FIRST_DATASET_MONTH
from hdb_elt.settings import DATA_DIR, REPO_ROOT

PACKAGE_DIR = Path(__file__).resolve().parent

# The asset graph: one group, five stage assets in pipeline order (keys = the stage names).
GROUP = "hdb_resale_pipeline"
OWNERS = ["team:hdb-elt-workbook"]
JOB_NAME = "monthly_pipeline"
STAGE_TAG = "hdb_elt/stage"  # op tag naming a stage asset's notebook, e.g. "02_validate"

# Monthly partitions, in Singapore time (registration months are Singapore months).
FIRST_MONTH = FIRST_DATASET_MONTH  # the dataset starts in January 1990
TIMEZONE = "Asia/Singapore"

# The instance settings (one run at a time: runs write the warehouse), and where they go.
DAGSTER_YAML = PACKAGE_DIR / "dagster.yaml"
# A class's instance (the shared warehouse): storage in PostgreSQL, several runs at once. Chosen
# when the warehouse is the shared one (HDB_WAREHOUSE_CATALOG set); its storage is the database
# DAGSTER_PG_URL names.
DAGSTER_CLASS_YAML = PACKAGE_DIR / "dagster_class.yaml"
DAGSTER_PG_URL_ENV = "DAGSTER_PG_URL"
DEFAULT_DAGSTER_HOME = REPO_ROOT / ".dagster_home"

# The schedule: on the 28th of every month at 06:00 Singapore time, re-run the previous month
# (late registrations, revisions) and the current one, nearly complete by then. Not the 1st: a
# month with no sales yet has nothing to validate, and the validate stage says so by failing.
# Daily instead: "0 6 * * *" (see README: Orchestration with Dagster).
SCHEDULE_CRON = "0 6 28 * *"
SCHEDULE_MONTHS_BACK = 1

# The sensor looks at the delivery folder this often (seconds).
SENSOR_INTERVAL_SECONDS = 60

# Every run's executed notebooks are kept here, one folder per month (or window) and run.
# HDB_DAGSTER_RUNS_DIR moves them (tests do); relative paths are relative to the repository.
RECORDS_ENV = "HDB_DAGSTER_RUNS_DIR"


def records_dir() -> Path:
    configured = os.environ.get(RECORDS_ENV, "").strip()
    if not configured:
        return DATA_DIR / "runs" / "dagster"
    path = Path(configured).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path
