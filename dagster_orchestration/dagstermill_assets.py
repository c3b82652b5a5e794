"""The stage notebooks as dagstermill assets: parameters handed in, every run recorded.

Each stage is ``dagstermill.define_dagstermill_asset`` over the very notebook a learner opens.
Two things dagstermill does not do for us are added at one seam, the function dagstermill
calls to execute a notebook (:func:`execute_stage_notebook`), and only for our stages:

- **Parameters.** dagstermill *replaces* a notebook's ``parameters`` cell with a cell that
  rebuilds the Dagster ``context``, and its context has no partition key. Our notebooks need
  their parameters cell (its ``None`` defaults are what JupyterLab runs), so the seam keeps
  it and adds a cell after it with this run's values, as papermill itself does: the months
  from the run's partition tag, the warehouse and the deliveries from the settings resource,
  and the asset's config (the validate stage's threshold).
- **The record of a failed run.** dagstermill keeps a failed notebook only in the instance's
  storage folder and names it in a log line. The seam keeps it with the run's other notebooks
  (:mod:`dagster_orchestration.records`) and fails the step with a ``Failure`` carrying its
  links, so the failure in the UI opens the notebook in one click.

On success the seam adds the stage's own metadata (rows, months, failing rules...) to the
materialization; the IO manager adds the links to the executed notebook.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import dagstermill.asset_factory
import dagstermill.factory
import nbformat
from dagster import AssetsDefinition, Failure, MetadataValue, map_asset_specs
from dagstermill import define_dagstermill_asset

from dagster_orchestration.constants import GROUP, OWNERS, STAGE_TAG
from dagster_orchestration.partitions import backfill_in_ranges, monthly_partitions, run_months
from dagster_orchestration.records import (
    code_location,
    keep_notebook,
    record_metadata,
    window_label,
)
from hdb_elt.settings import REPO_ROOT, Settings, temporary_environ
from hdb_elt.stage_notebooks import stage_name, stage_path

VALUES_TAG = "injected-by-dagster"
NOTEBOOK_IO_MANAGER = "output_notebook_io_manager"

# Warnings every kernel would print while dagstermill rebuilds the context (beta notices, a
# coroutine Dagster leaves un-awaited): kept out of the recorded notebooks. Module-scoped, so the
# processes a notebook starts (Meltano, dbt) see no difference.
KERNEL_WARNINGS = (
    "ignore::Warning:dagstermill.manager",
    "ignore::Warning:dagstermill.context",
    "ignore::RuntimeWarning:dagster._core.execution.context_creation_job",
)

StageMetadata = Callable[[Settings], Mapping[str, Any]]
_METADATA: dict[str, StageMetadata] = {}


# ``02_validate`` -> ``validate``: asset keys are the stage names without their number.
asset_name = stage_name


def notebook_description(stage: str) -> str:
    """The notebook's title and first paragraph, so the UI says what the notebook says."""
    notebook = nbformat.read(stage_path(stage), as_version=4)
    intro = next(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    title, _, rest = intro.partition("\n")
    first_paragraph = rest.strip().split("\n\n")[0].replace("\n", " ")
    where = stage_path(stage).relative_to(REPO_ROOT)
    return (
        f"{title.lstrip('# ')}\n\n{first_paragraph}\n\nNotebook: `{where}`. Each run's "
        "executed copy is kept under `data/runs/dagster/<month>/` (see the materialization)."
    )


def stage_asset(
    stage: str,
    *,
    deps: Sequence[AssetsDefinition] = (),
    tool: str,
    metadata: StageMetadata | None = None,
    config_schema: Mapping[str, Any] | None = None,
) -> AssetsDefinition:
    """The dagstermill asset of one stage notebook, partitioned by month; an asset backfill
    runs its months as ranges (:data:`dagster_orchestration.partitions.backfill_in_ranges`).

    The UI shows dagstermill's compute kind, ``ipynb`` (an asset has one compute kind or a set
    of kinds, not both); ``tool`` names what the notebook runs, as a tag.
    """
    if metadata is not None:
        _METADATA[stage] = metadata
    notebook_asset = define_dagstermill_asset(
        name=asset_name(stage),
        notebook_path=str(stage_path(stage)),
        deps=list(deps),
        partitions_def=monthly_partitions,
        group_name=GROUP,
        description=notebook_description(stage),
        config_schema=config_schema,
        required_resource_keys={"settings"},
        io_manager_key=NOTEBOOK_IO_MANAGER,
        save_notebook_on_failure=True,
        op_tags={STAGE_TAG: stage},
    )
    # define_dagstermill_asset takes no backfill policy: it is set on the definition it returns.
    return map_asset_specs(
        lambda spec: spec.replace_attributes(owners=OWNERS).merge_attributes(tags={"tool": tool}),
        [notebook_asset.with_attributes(backfill_policy=backfill_in_ranges)],
    )[0]


# --- the seam --------------------------------------------------------------------------------


def parameters_cell_source(parameters: Mapping[str, Any], note: str) -> str:
    lines = [f"# Injected by Dagster ({note}); the cell above holds the notebook's defaults."]
    lines += [f"{name} = {value!r}" for name, value in parameters.items()]
    return "\n".join(lines)


def with_parameters(source: Path, parameters: Mapping[str, Any], note: str):
    """The notebook with a cell of ``parameters`` after its ``parameters`` cell, and an empty
    cell tagged ``parameters`` before it, which dagstermill replaces with its context cell."""
    notebook = nbformat.read(source, as_version=4)
    index = next(
        (i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])),
        None,
    )
    if index is None:
        raise ValueError(f"{source.name} has no cell tagged 'parameters'.")
    placeholder = nbformat.v4.new_code_cell("", metadata={"tags": ["parameters"]})
    values = nbformat.v4.new_code_cell(
        parameters_cell_source(parameters, note), metadata={"tags": [VALUES_TAG]}
    )
    cells = notebook.cells
    notebook.cells = [*cells[:index], placeholder, cells[index], values, *cells[index + 1 :]]
    return notebook


def execute_stage_notebook(
    step_context,
    name: str,
    save_notebook_on_failure: bool,
    notebook_path: str,
    output_notebook_dir: str,
    inputs: Mapping[str, object],
) -> str:
    """dagstermill's ``execute_notebook`` for our stages (see the module's docstring)."""
    stage = step_context.op_def.tags.get(STAGE_TAG)
    if stage is None:  # not one of ours
        return _dagstermill_execute_notebook(
            step_context,
            name=name,
            save_notebook_on_failure=save_notebook_on_failure,
            notebook_path=notebook_path,
            output_notebook_dir=output_notebook_dir,
            inputs=inputs,
        )
    run = step_context.dagster_run
    start, end = run_months(run.tags)
    window = window_label(start, end)
    settings_resource = step_context.resources.settings
    parameters = {
        **settings_resource.notebook_parameters(start, end),
        **dict(step_context.op_config or {}),
    }
    prepared = Path(output_notebook_dir) / f"{stage}.parameters.ipynb"
    nbformat.write(
        with_parameters(Path(notebook_path), parameters, f"run {run.run_id[:8]}, {window}"),
        prepared,
    )
    step_context.log.info(f"{stage} for {window} with {json.dumps(parameters)}")
    # The same shape as hdb_elt.stage_notebooks.execute_stage on purpose: that one runs a stage
    # with papermill outside Dagster, this one with dagstermill inside it.
    try:
        with _kernel_warnings():
            executed = _dagstermill_execute_notebook(
                step_context,
                name=name,
                save_notebook_on_failure=save_notebook_on_failure,
                notebook_path=str(prepared),
                output_notebook_dir=output_notebook_dir,
                inputs=inputs,
            )
    except Exception as error:
        raise _stage_failure(
            step_context, stage, window, Path(output_notebook_dir), error
        ) from None
    metadata = _METADATA.get(stage)
    if metadata is not None:
        settings = settings_resource.for_months(start, end)
        step_context.add_output_metadata(
            {"months": MetadataValue.text(window), **metadata(settings)}
        )
    return executed


def _kernel_warnings():
    """PYTHONWARNINGS for the kernel dagstermill starts (it inherits this environment)."""
    before = os.environ.get("PYTHONWARNINGS")
    return temporary_environ({"PYTHONWARNINGS": ",".join(filter(None, [before, *KERNEL_WARNINGS]))})


def _stage_failure(step_context, stage: str, window: str, out_dir: Path, error: Exception):
    """A ``Failure`` saying what the notebook raised, linking to the kept failed notebook."""
    reason = (
        f"{error.ename}: {error.evalue}"  # a cell raised (papermill's PapermillExecutionError)
        if hasattr(error, "ename")
        else f"{type(error).__name__}: {error}"
    )
    metadata: dict[str, MetadataValue] = {"error": MetadataValue.text(reason)}
    executed = sorted(out_dir.glob("*-out.ipynb"))
    if executed:
        folder = getattr(step_context.resources, NOTEBOOK_IO_MANAGER).run_folder(step_context)
        notebook, html = keep_notebook(executed[0].read_bytes(), folder, stage)
        metadata.update(record_metadata(notebook, html, code_location(step_context.dagster_run)))
        reason += f"\nThe executed notebook, where it stopped: {notebook}"
    return Failure(description=f"{stage} failed for {window}.\n{reason}", metadata=metadata)


# Installed once, when the assets are defined; the original stays reachable for other assets.
_dagstermill_execute_notebook = dagstermill.factory.execute_notebook
dagstermill.asset_factory.execute_notebook = execute_stage_notebook
