"""The project-local Dagster instance: DAGSTER_HOME with this project's dagster.yaml in it.

Which one follows the warehouse: the DuckDB file (the default) gets ``dagster.yaml`` (storage in
DAGSTER_HOME's SQLite files, one run at a time); the shared warehouse (``HDB_WAREHOUSE_CATALOG``
set) gets ``dagster_class.yaml`` (storage in PostgreSQL at ``DAGSTER_PG_URL``, several runs at
once), the instance a whole class shares.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path

from dagster_orchestration.constants import (
    DAGSTER_CLASS_YAML,
    DAGSTER_PG_URL_ENV,
    DAGSTER_YAML,
    DEFAULT_DAGSTER_HOME,
)
from hdb_elt.settings import CATALOG_SETTING, SettingsError, environment

# The first line of each of our instance files: a dagster.yaml starting with one is ours to
# replace; any other is someone's own, left alone.
MARKERS = tuple(
    path.read_text(encoding="utf-8").splitlines()[0] for path in (DAGSTER_YAML, DAGSTER_CLASS_YAML)
)


class ClassInstanceError(SettingsError):
    """The shared warehouse is set, but not the class's Dagster storage."""


def instance_yaml(env: Mapping[str, str] | None = None) -> Path:
    """The instance settings the environment (and ``.env``) calls for: the class's when the
    warehouse is the shared one, else the laptop's."""
    values = environment(env)
    if not values.get(CATALOG_SETTING, "").strip():
        return DAGSTER_YAML
    if not values.get(DAGSTER_PG_URL_ENV, "").strip():
        raise ClassInstanceError(
            f"{CATALOG_SETTING} is set (the class's shared warehouse), so runs go to the class's "
            f"Dagster instance in PostgreSQL, but {DAGSTER_PG_URL_ENV} is not set. Learners: "
            f"launch runs in the class's Dagster UI (its address is in your .env from the "
            f"instructor). Instructors: add the {DAGSTER_PG_URL_ENV}=postgresql://... line that "
            f"`make class-server` prints to your .env."
        )
    return DAGSTER_CLASS_YAML


def prepare_home(home: Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """Create DAGSTER_HOME (``home``, else $DAGSTER_HOME, else ``.dagster_home/``) with the
    project's instance settings in it (:func:`instance_yaml`), set the variable, and return the
    folder.

    A ``dagster.yaml`` that is not a copy of ours (a DAGSTER_HOME of your own) is left alone,
    with a warning: then the run queue's limit is yours to configure.
    """
    source = instance_yaml(env)
    home = Path(home or os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists() or target.read_text(encoding="utf-8").startswith(MARKERS):
        if not target.exists() or target.read_bytes() != source.read_bytes():
            shutil.copyfile(source, target)
    else:
        warnings.warn(
            f"{target} is not this project's dagster.yaml: left as it is. Merge the settings "
            f"of {source} into it (the run queue's limit: one run at a time on a DuckDB file).",
            stacklevel=2,
        )
    os.environ["DAGSTER_HOME"] = str(home)
    return home


if __name__ == "__main__":
    try:
        print(prepare_home())
    except ClassInstanceError as exc:
        raise SystemExit(f"ClassInstanceError: {exc}") from None
