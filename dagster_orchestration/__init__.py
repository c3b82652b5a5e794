"""The Dagster code location of the workbook: the stage notebooks as monthly-partitioned assets.

``definitions.py`` exposes ``defs``; ``stages/`` has one module per stage notebook (its asset,
checks and metadata); partitions, resources, the job, the schedule and the sensor each have
their own module; ``run.py`` is ``make run``.
"""

import warnings

from dagster import BetaWarning

# dagstermill's API is beta (its version is pinned in pyproject.toml); its beta warnings would
# otherwise open every log and every recorded notebook (the kernel loads this package too).
warnings.filterwarnings(
    "ignore",
    category=BetaWarning,
    message=r"(Function|Class) `(define_dagstermill_asset|execute_notebook|get_papermill_parameters"
    r"|replace_parameters|Manager|DagstermillExecutionContext)`",
)
