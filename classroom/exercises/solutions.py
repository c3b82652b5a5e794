"""The exercise notebooks and their solutions: where they are, and how they are executed.

``notebooks/exercises/NN_<name>.ipynb`` are committed unexecuted, as a learner starts them;
``notebooks/exercises/solutions/NN_<name>.ipynb`` are committed executed on the reference
deliveries, and ``pytest --nbval`` compares their outputs. :func:`refresh_solutions`
re-executes the solutions in place, with workspaces and checkpoints in a temporary folder, so a
refresh never touches a learner's workspace.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from classroom.checkpoints import CHECKPOINTS_ENV
from classroom.exercises.workspace import (
    DEFAULT_EXERCISES_DIR,
    EXERCISES,
    EXERCISES_ENV,
    exercise,
)
from classroom.reference_outputs import execute_notebook, reference_environment
from hdb_elt.settings import NOTEBOOKS_DIR, display_path, temporary_environ

EXERCISE_NOTEBOOKS_DIR = NOTEBOOKS_DIR / "exercises"
SOLUTIONS_DIR = EXERCISE_NOTEBOOKS_DIR / "solutions"
TODO_TAG = "todo"


def exercise_path(name: str) -> Path:
    return EXERCISE_NOTEBOOKS_DIR / f"{exercise(name).name}.ipynb"


def solution_path(name: str) -> Path:
    return SOLUTIONS_DIR / f"{exercise(name).name}.ipynb"


@contextmanager
def scratch_exercises() -> Iterator[Path]:
    """Workspaces and checkpoints in a new temporary folder for the block (yields it)."""
    with tempfile.TemporaryDirectory(prefix="hdb-exercises-") as tmp:
        values = {
            EXERCISES_ENV: str(Path(tmp) / "exercises"),
            CHECKPOINTS_ENV: str(Path(tmp) / "checkpoints"),
        }
        with temporary_environ(values):
            yield Path(tmp)


def refresh_solutions(names: Sequence[str] | None = None, timeout: int = 900) -> None:
    """Re-execute solution notebooks in place on the reference deliveries, and save them."""
    import nbformat

    chosen = [exercise(n).name for n in names] if names else list(EXERCISES)
    with reference_environment(), scratch_exercises() as scratch:
        for name in chosen:
            path = solution_path(name)
            notebook, seconds = execute_notebook(path, SOLUTIONS_DIR, timeout)
            _as_a_learner_sees_it(notebook, scratch / "exercises")
            nbformat.write(notebook, path)
            print(f"{path.name}: executed in {seconds:.1f} s and saved")


def _as_a_learner_sees_it(notebook, scratch: Path) -> None:
    """Show the temporary workspaces folder as the default one, ``data/exercises``."""
    shown = display_path(DEFAULT_EXERCISES_DIR)
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                output["text"] = output["text"].replace(str(scratch), shown)
