"""``pytest --nbval notebooks/``: of the exercises, run the solutions only.

The exercises themselves end in a self-check that fails until the learner has done the work
(``tests/test_exercises.py`` checks that it fails, and how); their solutions, committed
executed on the reference deliveries, are what nbval re-runs and compares. Workspaces and
checkpoints go to a temporary folder, so a test run never resets a learner's workspace.
The reference deliveries and window come from ``notebooks/conftest.py``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

from classroom.checkpoints import CHECKPOINTS_ENV
from classroom.exercises.workspace import EXERCISES_ENV

collect_ignore_glob = ["[0-9]*.ipynb"]

_SCRATCH = Path(tempfile.mkdtemp(prefix="hdb-nbval-exercises-"))
atexit.register(shutil.rmtree, _SCRATCH, True)
os.environ.update(
    {
        EXERCISES_ENV: str(_SCRATCH / "exercises"),
        CHECKPOINTS_ENV: str(_SCRATCH / "checkpoints"),
    }
)
