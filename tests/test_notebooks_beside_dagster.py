"""A plain papermill run still works in a process where dagstermill has been imported.

Importing dagstermill swaps papermill's Python translator for one that only accepts
Dagster's context, so without care `make run`-style runs break after any Dagster code ran.
"""

from __future__ import annotations

import dagstermill.translator  # noqa: F401  (registers Dagster's translator, as Dagster does)
import pytest
from papermill.translators import papermill_translators

from hdb_elt.settings import stage_settings
from hdb_elt.stage_notebooks import run_stages

pytestmark = pytest.mark.slow


def test_a_plain_run_after_dagstermill_was_imported(shared_monthly, tmp_path) -> None:
    dagsters = papermill_translators.find_translator("python3", "python")
    settings = stage_settings("2023-02", "2023-02", tmp_path / "w.duckdb", shared_monthly)
    runs = run_stages(settings, tmp_path / "run", stages=["01_extract_load", "02_validate"])
    assert [r.stage for r in runs] == ["01_extract_load", "02_validate"]
    # Dagster's translator is back for Dagster's own runs.
    assert papermill_translators.find_translator("python3", "python") is dagsters
