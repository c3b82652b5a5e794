"""Classroom exercises: workspaces, the exercises' helpers, and their self-checks.

Each exercise notebook (``notebooks/exercises/NN_<name>.ipynb``) starts with
:func:`workspace`, its own copy of the pipeline's state restored from a checkpoint, and ends
with a self-check from the module of the same name here, which says what is right, what is
still missing, and gives a hint. The checks are tested Python, so the notebooks stay thin.
"""

from __future__ import annotations

from classroom.exercises.workspace import (
    EXERCISES,
    CheckResult,
    DbtRun,
    Exercise,
    ExerciseError,
    NotDoneYet,
    Workspace,
    exercise,
    exercises_dir,
    reset_workspace,
    workspace,
)

__all__ = [
    "EXERCISES",
    "CheckResult",
    "DbtRun",
    "Exercise",
    "ExerciseError",
    "NotDoneYet",
    "Workspace",
    "exercise",
    "exercises_dir",
    "reset_workspace",
    "workspace",
]
