"""Resources: the project's settings, and the IO manager that keeps every executed notebook."""

from __future__ import annotations

from pathlib import Path

from dagster import (
    ConfigurableIOManager,
    ConfigurableResource,
    InputContext,
    OutputContext,
)
from pydantic import Field, PrivateAttr

from dagster_orchestration.constants import STAGE_TAG, records_dir
from dagster_orchestration.partitions import run_months
from dagster_orchestration.records import (
    code_location,
    keep_notebook,
    record_metadata,
    run_folder,
    window_label,
)
from hdb_elt.settings import Settings, stage_settings
from hdb_elt.stage_notebooks import stage_parameters


class HdbSettings(ConfigurableResource):
    """The settings of ``hdb_elt.settings``, from the same environment variables (and ``.env``).

    Empty fields mean "as the environment says", read when a run starts, exactly as for
    ``make run`` and the notebooks; set them in the launchpad to point one run elsewhere. The
    window is not a setting here: each run's months come from its partition.

    A run resolves its settings once: every stage and check of the run sees the same
    warehouse and the same deliveries folder, even if the environment or data/raw/ change
    while it runs.
    """

    warehouse_path: str | None = Field(
        default=None, description="The DuckDB warehouse; empty: HDB_WAREHOUSE_PATH or the default."
    )
    data_dir: str | None = Field(
        default=None,
        description="The folder of CSV deliveries; empty: HDB_RESALE_DATA_DIR, else data/raw/ "
        "if it holds CSVs, else the data.gov.sg API.",
    )

    def delivery_dir(self) -> Path | None:
        """The folder of deliveries the runs read (None: the data.gov.sg API)."""
        return stage_settings(None, None, self.warehouse_path, self.data_dir).data_dir

    # Dagster initializes the resource for each run, so this holds one run's settings.
    _resolved: dict[tuple[str, str], Settings] = PrivateAttr(default_factory=dict)

    def for_months(self, start_month: str, end_month: str) -> Settings:
        """The settings of a run over ``start_month``..``end_month``, validated (once a run)."""
        window = (start_month, end_month)
        if window not in self._resolved:
            self._resolved[window] = stage_settings(
                start_month, end_month, self.warehouse_path, self.data_dir
            )
        return self._resolved[window]

    def notebook_parameters(self, start_month: str, end_month: str) -> dict[str, str]:
        """The values a stage notebook's parameters cell receives for that window."""
        return stage_parameters(self.for_months(start_month, end_month))


class RecordedNotebookIOManager(ConfigurableIOManager):
    """Keeps each run's executed notebook (and its HTML) instead of one file per partition.

    dagstermill's own LocalOutputNotebookIOManager writes ``<asset>/<partition>.ipynb``, so a
    re-run overwrites the record of the run before; here every run has its own folder.
    """

    base_dir: str | None = Field(
        default=None,
        description="Where the run folders go; empty: HDB_DAGSTER_RUNS_DIR or data/runs/dagster.",
    )

    def run_folder(self, step_context) -> Path:
        """The folder of the notebooks of the step's run (every stage of a run shares it)."""
        return run_folder(
            Path(self.base_dir) if self.base_dir else records_dir(),
            step_context.instance,
            step_context.run_id,
            window_label(*run_months(step_context.dagster_run.tags)),
        )

    def handle_output(self, context: OutputContext, obj: bytes) -> None:
        folder = self.run_folder(context.step_context)
        notebook, html = keep_notebook(obj, folder, context.op_def.tags[STAGE_TAG])
        location = code_location(context.step_context.dagster_run)
        context.add_output_metadata(record_metadata(notebook, html, location))

    def load_input(self, context: InputContext) -> bytes:
        raise NotImplementedError("Stage assets depend on each other by order, not by value.")
