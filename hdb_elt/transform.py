"""The transform stage: run dbt (the ``dbt_resale_flat`` project) as a subprocess.

dbt runs in its own process so that nothing here (a notebook, Dagster) holds the DuckDB
file while dbt writes it. The project and its ``profiles.yml`` live in ``dbt_resale_flat/``;
the warehouse path reaches dbt through ``HDB_WAREHOUSE_PATH`` (``Settings.child_env``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from hdb_elt.months import Month
from hdb_elt.settings import DBT_PROJECT_DIR, Settings, load_settings


def dbt_executable() -> str:
    """The ``dbt`` of this Python environment (the venv), else the one on ``PATH``."""
    beside_python = Path(sys.executable).with_name("dbt")
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which("dbt")
    if found is None:
        raise FileNotFoundError(
            "dbt is not installed in this environment: run `make setup` (or "
            "`pip install -e .`) to install dbt-core and dbt-duckdb."
        )
    return found


def window_vars(start: Month | str | None = None, end: Month | str | None = None) -> list[str]:
    """``--vars`` arguments selecting the months ``start``..``end`` (validated ``YYYY-MM``).

    With neither, no arguments: dbt then rebuilds every month with a newer raw delivery.
    """
    values: dict[str, str] = {}
    if start is not None:
        values["start_month"] = str(Month.parse(str(start)))
    if end is not None:
        values["end_month"] = str(Month.parse(str(end)))
    return ["--vars", json.dumps(values)] if values else []


def run_dbt(
    args: list[str], settings: Settings | None = None, *, capture: bool = False
) -> subprocess.CompletedProcess:
    """Run ``dbt <args>`` on the project with the settings' environment; do not raise.

    ``capture=True`` collects stdout and stderr as text (else they stream to the console).
    Check ``returncode``: non-zero means a model or a test failed, and dbt's output says which.
    """
    settings = settings or load_settings()
    command = [
        dbt_executable(),
        *args,
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
    ]
    return subprocess.run(
        command,
        cwd=DBT_PROJECT_DIR,
        env=settings.child_env(),
        capture_output=capture,
        text=True,
        check=False,
    )


def build_window(
    settings: Settings | None = None,
    start: Month | str | None = None,
    end: Month | str | None = None,
    *,
    unit_tests: bool = False,
    extra_args: list[str] | None = None,
    capture: bool = False,
) -> subprocess.CompletedProcess:
    """``dbt build`` (seeds, models, data tests) for the months ``start``..``end``.

    With no months, the default: every month whose latest raw delivery is new to the marts.
    Unit tests check the SQL against fixed inputs, not the data, so pipeline runs leave them
    out (as dbt Labs advises; about a second less per run) unless ``unit_tests=True``; CI runs
    them with every plain ``dbt build``.
    """
    args = ["build", *window_vars(start, end)]
    if not unit_tests:
        args += ["--exclude-resource-type", "unit_test"]
    return run_dbt([*args, *(extra_args or [])], settings, capture=capture)


class TransformError(RuntimeError):
    """dbt build failed; the message names the failing models and tests."""


def dbt_target_dir() -> Path:
    """dbt's artifacts folder: ``DBT_TARGET_PATH`` if set (dbt honours it too), else target/."""
    configured = os.environ.get("DBT_TARGET_PATH")
    if not configured:
        return DBT_PROJECT_DIR / "target"
    path = Path(configured)
    return path if path.is_absolute() else DBT_PROJECT_DIR / path


def build_summary(target_dir: Path | None = None) -> dict[str, dict[str, int]]:
    """Counts of results by resource type and status from dbt's last ``run_results.json``."""
    path = (target_dir or dbt_target_dir()) / "run_results.json"
    results = json.loads(path.read_text())["results"]
    summary: dict[str, dict[str, int]] = {}
    for result in results:
        kind = result["unique_id"].split(".")[0]
        by_status = summary.setdefault(kind, {})
        by_status[result["status"]] = by_status.get(result["status"], 0) + 1
    return summary


def failed_nodes(target_dir: Path | None = None) -> list[str]:
    """``unique_id: message`` of every result that errored or failed in the last dbt run."""
    path = (target_dir or dbt_target_dir()) / "run_results.json"
    if not path.exists():
        return []
    results = json.loads(path.read_text())["results"]
    return [
        f"{r['unique_id']}: {(r.get('message') or '').strip()}"
        for r in results
        if r["status"] in ("error", "fail")
    ]


def transform_window(settings: Settings) -> dict[str, dict[str, int]]:
    """Build the settings' window (models, seeds, tests); :class:`TransformError` on failure."""
    completed = build_window(settings, settings.start_month, settings.end_month, capture=True)
    if completed.returncode != 0:
        failures = failed_nodes()
        detail = "\n".join(failures[:10]) if failures else completed.stdout[-3000:]
        raise TransformError(
            f"dbt build failed for {settings.start_month}..{settings.end_month}:\n{detail}"
        )
    return build_summary()
