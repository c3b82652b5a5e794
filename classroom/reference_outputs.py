"""Keep the committed notebooks executed and reproducible (``make notebooks``).

``refresh_committed`` re-executes the numbered notebooks in place on the reference deliveries
(the bundled 2023 snapshot) and a fresh warehouse, so the outputs committed with them (which
``pytest --nbval`` compares) are the workbook's reference outputs. The exercise solutions are
refreshed by :func:`classroom.exercises.solutions.refresh_solutions` in the same environment.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from hdb_elt.settings import NOTEBOOKS_DIR, SNAPSHOT_DIR, temporary_environ
from hdb_elt.stage_notebooks import KERNEL, LESSONS, STAGES, stage_path

# The committed outputs come from the bundled 2023 snapshot (the same bytes as the reference
# deliveries in ../shared/data/hdb_resale/monthly/).
REFERENCE_DELIVERIES = SNAPSHOT_DIR


@contextmanager
def reference_environment() -> Iterator[Path]:
    """Point the settings at the reference deliveries and a new warehouse (yields its path)."""
    if not any(REFERENCE_DELIVERIES.glob("*.csv")):
        raise FileNotFoundError(
            f"The reference deliveries are not in {REFERENCE_DELIVERIES}: the committed outputs "
            "come from them."
        )
    with tempfile.TemporaryDirectory(prefix="hdb-reference-") as tmp:
        warehouse = Path(tmp) / "warehouse" / "hdb_resale.duckdb"
        reference = {
            "HDB_RESALE_DATA_DIR": str(REFERENCE_DELIVERIES),
            "HDB_WAREHOUSE_PATH": str(warehouse),
            "HDB_START_MONTH": "2023-01",
            "HDB_END_MONTH": "2023-12",
            "HDB_LOOKBACK_MONTHS": "1",
        }
        with temporary_environ(reference):
            yield warehouse


def execute_notebook(path: Path, cwd: Path, timeout: int) -> tuple[nbformat.NotebookNode, float]:
    """Execute the notebook at ``path`` in a fresh kernel started in ``cwd``; return the executed
    notebook (not saved) and the seconds it took."""
    notebook = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    NotebookClient(
        notebook, timeout=timeout, kernel_name=KERNEL, resources={"metadata": {"path": str(cwd)}}
    ).execute()
    return notebook, time.perf_counter() - started


def refresh_committed(stages: Sequence[str] = STAGES + LESSONS, timeout: int = 900) -> None:
    """Re-execute the numbered notebooks in place, on the reference data, in a fresh warehouse.

    The stages before the last one asked for run too (a stage needs what the earlier ones
    built), but only the notebooks asked for are written back. A lesson (``06_orchestrate``)
    needs no stage before it.
    """
    asked = [s for s in stages if s in STAGES]
    last = max((STAGES.index(stage) for stage in asked), default=-1)
    with reference_environment():
        for stage in [*STAGES[: last + 1], *(s for s in stages if s in LESSONS)]:
            path = stage_path(stage)
            notebook, seconds = execute_notebook(path, NOTEBOOKS_DIR, timeout)
            if stage in stages:
                nbformat.write(notebook, path)
                print(f"{path.name}: executed in {seconds:.1f} s and saved")
            else:
                print(f"{path.name}: executed in {seconds:.1f} s (prerequisite, not saved)")
