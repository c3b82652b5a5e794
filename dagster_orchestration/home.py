"""The project-local Dagster instance: DAGSTER_HOME with this project's dagster.yaml in it."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

from dagster_orchestration.constants import DAGSTER_YAML, DEFAULT_DAGSTER_HOME

MARKER = DAGSTER_YAML.read_text(encoding="utf-8").splitlines()[0]


def prepare_home(home: Path | None = None) -> Path:
    """Create DAGSTER_HOME (``home``, else $DAGSTER_HOME, else ``.dagster_home/``) with the
    project's ``dagster.yaml`` in it, set the variable, and return the folder.

    A ``dagster.yaml`` that is not a copy of ours (a DAGSTER_HOME of your own) is left alone,
    with a warning: then the one-run-at-a-time limit is yours to configure.
    """
    home = Path(home or os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists() or target.read_text(encoding="utf-8").startswith(MARKER):
        if not target.exists() or target.read_bytes() != DAGSTER_YAML.read_bytes():
            shutil.copyfile(DAGSTER_YAML, target)
    else:
        warnings.warn(
            f"{target} is not this project's dagster.yaml: left as it is. Merge the settings "
            f"of {DAGSTER_YAML} into it (one run writing the warehouse at a time).",
            stacklevel=2,
        )
    os.environ["DAGSTER_HOME"] = str(home)
    return home


if __name__ == "__main__":
    print(prepare_home())
