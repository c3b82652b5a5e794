"""The record of every run: its executed notebooks, kept as .ipynb and rendered to HTML.

Layout: ``data/runs/dagster/<month or first..last>/<run start>-<run id>/<NN_stage>.ipynb`` and
``.html`` beside it, so a month's folder lists every run that touched it, oldest first.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

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


def render_html(notebook: Path) -> Path:
    """Write ``<notebook>.html`` beside the notebook (nbconvert's lab template)."""
    import nbformat
    from nbconvert import HTMLExporter

    html = notebook.with_suffix(".html")
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(
        nbformat.reads(notebook.read_text(encoding="utf-8"), as_version=4)
    )
    html.write_text(body, encoding="utf-8")
    return html


def keep_notebook(content: bytes, folder: Path, stage: str) -> tuple[Path, Path]:
    """Save an executed notebook as ``<folder>/<stage>.ipynb`` and its HTML rendering."""
    folder.mkdir(parents=True, exist_ok=True)
    notebook = folder / f"{stage}.ipynb"
    notebook.write_bytes(content)
    return notebook, render_html(notebook)


def record_metadata(notebook: Path, html: Path) -> dict[str, MetadataValue]:
    """Metadata linking to a kept notebook: the UI shows "View Notebook" for the first."""
    return {
        "Executed notebook": MetadataValue.notebook(str(notebook)),
        "Notebook as HTML": MetadataValue.path(str(html)),
        "Run folder": MetadataValue.text(display_path(notebook.parent)),
    }
