"""Run the stage notebooks headless, and keep the committed ones executed and reproducible.

``run_stages`` executes the notebooks with papermill, injecting the window into each one's
``parameters`` cell, and keeps every executed copy in a run folder: the record of what ran.
(``classroom.reference_outputs`` re-executes them in place to refresh their committed outputs.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hdb_elt.settings import (
    DATA_DIR,
    NOTEBOOKS_DIR,
    Settings,
    display_path,
)

# The stages in pipeline order: the one list. Each is a notebook, ``NN_name.ipynb``; its name
# without the number is its Dagster asset's key and the step make run reports.
STAGES = ("01_extract_load", "02_validate", "03_transform", "04_test", "05_report")
# Numbered notebooks after the stages that are not stages themselves (no asset runs them):
# 06_orchestrate shows how Dagster runs the five, in a sandbox of its own.
LESSONS = ("06_orchestrate",)
RUNS_DIR = DATA_DIR / "runs"
KERNEL = "python3"


class StageFailed(RuntimeError):
    """A stage notebook raised; the message is the notebook's own error and where to read it."""

    def __init__(self, stage: str, error: str, notebook: Path) -> None:
        self.stage = stage
        self.notebook = notebook
        super().__init__(
            f"Stage {stage} failed: {error}\nThe executed notebook: {display_path(notebook)}"
        )


@dataclass
class StageRun:
    stage: str
    notebook: Path
    seconds: float


def stage_name(stage: str) -> str:
    """``02_validate`` -> ``validate``: the stage's name without its number."""
    return stage.split("_", 1)[1]


STAGE_NAMES = tuple(stage_name(stage) for stage in STAGES)


def stage_path(stage: str) -> Path:
    return NOTEBOOKS_DIR / f"{stage}.ipynb"


def stage_parameters(settings: Settings) -> dict[str, str]:
    """What a run injects into each notebook's ``parameters`` cell."""
    parameters = {
        "start_month": str(settings.start_month),
        "end_month": str(settings.end_month),
        "warehouse_path": str(settings.warehouse_path),
    }
    if settings.data_dir is not None:
        parameters["data_dir"] = str(settings.data_dir)
    return parameters


def new_run_dir(root: Path = RUNS_DIR) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = root / stamp
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = root / f"{stamp}-{suffix}"
    run_dir.mkdir(parents=True)
    return run_dir


@contextmanager
def plain_parameters() -> Iterator[None]:
    """Inject parameters with papermill's own Python translator while inside this block.

    Importing dagstermill (Dagster does, and so may a test or a notebook in the same process)
    replaces papermill's translator for Python with one that only knows Dagster's context and
    refuses anything else. A plain run puts papermill's back for its own duration, then
    restores whatever was registered, so Dagster's runs keep working.
    """
    from papermill.translators import PythonTranslator, papermill_translators

    previous = papermill_translators.find_translator(KERNEL, "python")
    papermill_translators.register("python", PythonTranslator)
    try:
        yield
    finally:
        papermill_translators.register("python", previous)


def execute_stage(
    stage: str, output: Path, parameters: dict[str, str], *, progress: bool = False
) -> float:
    """Execute one stage notebook with papermill into ``output``; raise :class:`StageFailed`."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    started = time.perf_counter()
    # dagster_orchestration.dagstermill_assets.execute_stage_notebook has the same shape on
    # purpose: this runs a stage with papermill outside Dagster, that one with dagstermill.
    try:
        with plain_parameters():
            papermill.execute_notebook(
                str(stage_path(stage)),
                str(output),
                parameters=parameters,
                kernel_name=KERNEL,
                cwd=str(NOTEBOOKS_DIR),
                progress_bar=progress,
                log_output=False,
            )
    except PapermillExecutionError as exc:
        raise StageFailed(stage, f"{exc.ename}: {exc.evalue}", output) from None
    return time.perf_counter() - started


def iter_stages(
    settings: Settings,
    run_dir: Path | None = None,
    stages: Sequence[str] = STAGES,
) -> Iterator[StageRun]:
    """Run the stage notebooks in order for the settings' window, yielding each as it ends.

    The first failing stage raises :class:`StageFailed`; later stages do not run.
    """
    run_dir = run_dir or new_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)  # papermill writes into it, never creates it
    parameters = stage_parameters(settings)
    for stage in stages:
        output = run_dir / f"{stage}.ipynb"
        seconds = execute_stage(stage, output, parameters)
        yield StageRun(stage, output, seconds)


def run_stages(
    settings: Settings,
    run_dir: Path | None = None,
    stages: Sequence[str] = STAGES,
) -> list[StageRun]:
    """Run the stage notebooks in order for the settings' window; stop at the first failure."""
    return list(iter_stages(settings, run_dir, stages))
