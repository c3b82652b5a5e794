"""The record of every run: its executed notebooks, kept as .ipynb and rendered to HTML.

Layout: ``data/runs/dagster/<month or first..last>/<run start>-<run id>/<NN_stage>.ipynb`` and
``.html`` beside it, so a month's folder lists every run that touched it, oldest first.

A kept notebook starts with the learner's own cells: dagstermill's context cell (one very long
``_reconstitute_job_context(...)`` line, and the log of the resources it starts) stays in the
file, folded into one comment line whose metadata holds the original, and the HTML leaves it out.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

from dagster import DagsterInstance, MetadataValue

from hdb_elt.settings import display_path


def run_folder(base_dir: Path, instance: DagsterInstance, run_id: str, window: str) -> Path:
    """The folder of one run's notebooks (the same for every stage of the run)."""
    record = instance.get_run_record_by_id(run_id)
    created = record.create_timestamp if record is not None else datetime.now(UTC)
    stamp = created.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path(base_dir) / window / f"{stamp}-{run_id[:8]}"


def window_label(start: str, end: str) -> str:
    return start if start == end else f"{start}..{end}"


# The tag dagstermill gives the cell that rebuilds a run's context in the kernel.
CONTEXT_CELL_TAG = "injected-parameters"
FOLDED_SOURCE = (
    "# Dagster's context for this run (dagstermill's cell, folded: its source and output are in "
    "this cell's metadata, 'dagstermill')."
)


def fold_context_cell(content: bytes) -> bytes:
    """The executed notebook with dagstermill's context cell folded into one comment line.

    The original source and outputs move into the cell's metadata (``dagstermill``), and the
    cell is collapsed in JupyterLab: the record keeps everything, a reader meets their notebook.
    """
    import nbformat

    notebook = nbformat.reads(content.decode("utf-8"), as_version=4)
    for cell in notebook.cells:
        if CONTEXT_CELL_TAG in cell.metadata.get("tags", []) and cell.source != FOLDED_SOURCE:
            cell.metadata["dagstermill"] = {"source": cell.source, "outputs": cell.outputs}
            cell.metadata["jupyter"] = {"source_hidden": True, "outputs_hidden": True}
            cell.source, cell.outputs = FOLDED_SOURCE, []
    return nbformat.writes(notebook).encode("utf-8")


def render_html(notebook: Path) -> Path:
    """Write ``<notebook>.html`` beside the notebook (nbconvert's lab template), without
    dagstermill's context cell."""
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    html = notebook.with_suffix(".html")
    exporter = HTMLExporter(template_name="lab")
    exporter.register_preprocessor(
        TagRemovePreprocessor(remove_cell_tags={CONTEXT_CELL_TAG}), enabled=True
    )
    body, _ = exporter.from_notebook_node(
        nbformat.reads(notebook.read_text(encoding="utf-8"), as_version=4)
    )
    html.write_text(body, encoding="utf-8")
    return html


def keep_notebook(content: bytes, folder: Path, stage: str) -> tuple[Path, Path]:
    """Save an executed notebook as ``<folder>/<stage>.ipynb`` and its HTML rendering."""
    folder.mkdir(parents=True, exist_ok=True)
    notebook = folder / f"{stage}.ipynb"
    notebook.write_bytes(fold_context_cell(content))
    return notebook, render_html(notebook)


def notebook_view_url(notebook: Path, location: str) -> str:
    """The Dagster UI's own page for a notebook (what its "View Notebook" dialog shows), as a
    link relative to the UI: one click opens it in a new tab."""
    return "/notebook?" + urlencode({"path": str(notebook), "repoLocName": location})


def record_metadata(
    notebook: Path, html: Path, location: str | None = None
) -> dict[str, MetadataValue]:
    """Metadata linking to a kept notebook: the UI shows "View Notebook" for the notebook value
    and, for a run of a code location (``location``), a link that opens it."""
    metadata = {"Executed notebook": MetadataValue.notebook(str(notebook))}
    if location is not None:
        metadata["Open the executed notebook"] = MetadataValue.url(
            notebook_view_url(notebook, location)
        )
    return {
        **metadata,
        "Notebook as HTML": MetadataValue.path(str(html)),
        "Run folder": MetadataValue.text(display_path(notebook.parent)),
    }


def code_location(dagster_run) -> str | None:
    """The code location a run was launched from (None: executed in process, no UI)."""
    origin = getattr(dagster_run, "remote_job_origin", None)
    return origin.location_name if origin is not None else None
