"""The transform stage: run dbt (the ``dbt_resale_flat`` project) as a subprocess.

dbt runs in its own process so that nothing here (a notebook, Dagster) holds the DuckDB
file while dbt writes it. The project and its ``profiles.yml`` live in ``dbt_resale_flat/``;
the warehouse path reaches dbt through ``HDB_WAREHOUSE_PATH`` (``Settings.child_env``).
What the transform notebook shows (:func:`built_models`, :func:`mart_preview`) is read from
dbt's artifacts and from the warehouse opened read-only, closed at once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from hdb_elt.extract_load import source_name
from hdb_elt.lake_lock import dbt_lock
from hdb_elt.months import Month
from hdb_elt.settings import DBT_PROJECT_DIR, Settings, display_path, load_settings
from hdb_elt.warehouse import (
    check_is_duckdb,
    connect,
    ensure_latest_deliveries,
    lock_error_from_text,
)


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


def window_env(start: Month | str | None = None, end: Month | str | None = None) -> dict[str, str]:
    """The environment selecting the months ``start``..``end`` (validated ``YYYY-MM``; empty:
    no bound), what the pipeline passes instead of :func:`window_vars`. dbt reads it only when
    the models run (macro ``month_window``), so a new window keeps dbt's parsed project, where
    a new ``--vars`` re-parses all of it (about 2 s of CPU)."""
    return {
        "HDB_DBT_START_MONTH": "" if start is None else str(Month.parse(str(start))),
        "HDB_DBT_END_MONTH": "" if end is None else str(Month.parse(str(end))),
    }


# The window a pipeline's dbt run covered, kept in its run_results.json (dbt copies variables
# named DBT_ENV_CUSTOM_ENV_* into the results' metadata): runs of other months may run dbt at
# the same time, and each stage reads the results of its own window.
RUN_WINDOW = "HDB_RUN_WINDOW"


def window_record(start: Month | str, end: Month | str) -> dict[str, str]:
    """The environment recording ``start``..``end`` in dbt's results (:func:`recorded_window`)."""
    return {f"DBT_ENV_CUSTOM_ENV_{RUN_WINDOW}": f"{start}..{end}"}


def recorded_window(run_results: dict) -> tuple[str | None, str | None]:
    """The window a dbt run's ``run_results.json`` says it covered: the one the pipeline
    recorded (:func:`window_record`), else the one given by hand in ``--vars``."""
    recorded = ((run_results.get("metadata") or {}).get("env") or {}).get(RUN_WINDOW)
    if recorded:
        start, _, end = recorded.partition("..")
        return start, end
    given = (run_results.get("args") or {}).get("vars") or {}
    return given.get("start_month"), given.get("end_month")


def run_dbt(
    args: list[str],
    settings: Settings | None = None,
    *,
    capture: bool = False,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run ``dbt <args>`` on the project with the settings' environment; do not raise.

    ``capture=True`` collects stdout and stderr as text (else they stream to the console).
    ``env`` adds variables to that environment. Check ``returncode``: non-zero means a model
    or a test failed, and dbt's output says which.
    """
    settings = settings or load_settings()
    check_is_duckdb(settings.warehouse_path)  # dbt would open any file it is pointed at
    command = [
        dbt_executable(),
        *args,
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
    ]
    with dbt_lock(settings.lake) if settings.lake else nullcontext():
        return subprocess.run(
            command,
            cwd=DBT_PROJECT_DIR,
            env={**settings.child_env(), **(env or {})},
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
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """``dbt build`` (seeds, models, data tests) for the months ``start``..``end``, passed
    in the environment (:func:`window_env`) so that dbt reuses its parsed project.

    With no months, the default: every month whose latest accepted delivery is new to the
    marts.
    Unit tests check the SQL against fixed inputs, not the data, so pipeline runs leave them
    out (as dbt Labs advises; about a second less per run) unless ``unit_tests=True``; CI runs
    them with every plain ``dbt build``.
    """
    # Staging reads raw.latest_deliveries: a warehouse made before the view existed gets it.
    ensure_latest_deliveries((settings or load_settings()).warehouse_path)
    args, window = ["build"], window_env(start, end)
    if unit_tests:
        # A unit test sets its own window with ``overrides: vars``; the environment's window
        # would reach the ones that set none, so with unit tests the window goes in --vars.
        args += window_vars(start, end)
        window = window_env()
    else:
        args += ["--exclude-resource-type", "unit_test"]
    if start is not None and end is not None:
        window = {**window, **window_record(start, end)}
    return run_dbt(
        [*args, *(extra_args or [])], settings, capture=capture, env={**window, **(env or {})}
    )


class TransformError(RuntimeError):
    """dbt build failed; the message names the failing models and tests."""


def dbt_target_dir() -> Path:
    """dbt's artifacts folder: ``DBT_TARGET_PATH`` if set, else target/. The stages' dbt runs
    each write into a folder of their own under it (:func:`new_run_target`)."""
    configured = os.environ.get("DBT_TARGET_PATH")
    if not configured:
        return DBT_PROJECT_DIR / "target"
    path = Path(configured)
    return path if path.is_absolute() else DBT_PROJECT_DIR / path


def _summarise(results: list[dict]) -> dict[str, dict[str, int]]:
    summary: dict[str, dict[str, int]] = {}
    for result in results:
        kind = result["unique_id"].split(".")[0]
        by_status = summary.setdefault(kind, {})
        by_status[result["status"]] = by_status.get(result["status"], 0) + 1
    return summary


def _failures(results: list[dict]) -> list[str]:
    return [
        f"{r['unique_id']}: {(r.get('message') or '').strip()}"
        for r in results
        if r["status"] in ("error", "fail")
    ]


# --- the transform notebook: build the models of a window, and show what was built ----------

# Stage 04 runs the data and unit tests, so stage 03 builds seeds and models only.
WITHOUT_TESTS = ["--exclude-resource-type", "test"]

# Each mart's natural order, so a preview shows the same rows on every run.
MART_ORDER = {
    "fct_resale_transactions": "month_key, _source, _source_row",
    "agg_monthly_town_prices": "month_key, town, flat_type",
    "dim_town": "town",
    "dim_flat_type": "sort_order, flat_type",
}
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
# Load metadata that differs from run to run (ids, times) or names a local file.
_RUN_SPECIFIC_COLUMNS = ("_load_id", "_loaded_at")


# Each dbt invocation writes its artifacts into a folder of its own (as dagster-dbt gives each
# one its own --target-path), so what a stage reads afterwards is its own run's, never an earlier
# or a concurrent run's. The folders live under dbt_target_dir()/runs/, newest last by name.
RUNS_FOLDER = "runs"
KEEP_RUN_TARGETS = 5
# A folder younger than this is kept whatever their number: runs of other months may be using
# theirs at the same time (a class's run queue starts several at once).
KEEP_RECENT_SECONDS = 3600
PARTIAL_PARSE = "partial_parse.msgpack"


def run_targets(base: Path | None = None) -> list[Path]:
    """The per-run artifact folders under ``base`` (:func:`dbt_target_dir`), oldest first."""
    runs = (base or dbt_target_dir()) / RUNS_FOLDER
    return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []


def new_run_target(base: Path | None = None) -> Path:
    """A fresh, empty artifacts folder for one dbt invocation (its ``DBT_TARGET_PATH``).

    dbt keeps its parsed project (``partial_parse.msgpack``) in the target folder, and a fresh
    folder would mean a full parse every run (1.3 s more for a build of one month), so the
    newest parsed project beside it is copied in first; dbt re-parses whatever changed. Only
    the latest :data:`KEEP_RUN_TARGETS` folders are kept, and any of the last hour
    (:data:`KEEP_RECENT_SECONDS`), which a concurrent run may still be reading.
    """
    base = base or dbt_target_dir()
    earlier = run_targets(base)
    parsed = [p for p in (base, *earlier) if (p / PARTIAL_PARSE).is_file()]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    folder = base / RUNS_FOLDER / f"{stamp}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    if parsed:
        newest = max(parsed, key=lambda p: (p / PARTIAL_PARSE).stat().st_mtime)
        shutil.copyfile(newest / PARTIAL_PARSE, folder / PARTIAL_PARSE)
    recent = time.time() - KEEP_RECENT_SECONDS
    for old in earlier[: max(0, len(earlier) - (KEEP_RUN_TARGETS - 1))]:
        if old.stat().st_mtime < recent:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def latest_run_target(
    base: Path | None = None, *, which: str | None = None, window: tuple[str, str] | None = None
) -> Path | None:
    """The newest run folder holding dbt's results (``run_results.json``), or None; with
    ``which`` and ``window``, the newest of ``dbt <which>`` over that window (runs of other
    months may run dbt at the same time, in folders of their own), else the newest of any."""
    found = [p for p in run_targets(base) if (p / "run_results.json").is_file()]
    if which is not None and window is not None:
        for target in reversed(found):
            try:
                results = json.loads((target / "run_results.json").read_text())
            except (OSError, ValueError):
                continue  # dbt still writing it
            which_ = (results.get("args") or {}).get("which")
            if which_ == which and recorded_window(results) == tuple(window):
                return target
    return found[-1] if found else None


def read_run_results(target: Path) -> list[dict] | None:
    """The results dbt wrote in ``target/run_results.json``; None if it wrote none."""
    try:
        return json.loads((target / "run_results.json").read_text())["results"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return None


def plain_output(completed: subprocess.CompletedProcess) -> str:
    """dbt's captured output without its terminal colour codes."""
    return _ANSI_RE.sub("", (completed.stdout or "") + (completed.stderr or ""))


def missing_results(target_dir: Path) -> str:
    """Why a run's results are missing, and what to do."""
    return (
        f"its results are missing from {display_path(target_dir)}: dbt's log says why "
        "(dbt_resale_flat/logs/dbt.log, or in DBT_LOG_PATH if set). Run again."
    )


def build_models(settings: Settings) -> dict[str, dict[str, int]]:
    """``dbt build`` of the seeds and models (no tests) for the settings' window.

    One dbt process builds everything in dependency order; the tests are left to the test
    stage (:func:`hdb_elt.test.run_tests`). Raises :class:`TransformError` naming the
    failing models; returns counts of results by kind and status.
    """
    target = new_run_target()
    completed = build_window(
        settings,
        settings.start_month,
        settings.end_month,
        extra_args=WITHOUT_TESTS,
        capture=True,
        env={"DBT_TARGET_PATH": str(target)},
    )
    results = read_run_results(target)
    window = f"{settings.start_month}..{settings.end_month}"
    if completed.returncode != 0:
        locked = lock_error_from_text(settings.warehouse_path, plain_output(completed))
        if locked is not None:
            raise locked
        failures = _failures(results or [])
        detail = "\n".join(failures[:10]) if failures else plain_output(completed)[-3000:]
        raise TransformError(
            f"dbt build failed for {window}:\n{detail}\n"
            "dbt's full log: dbt_resale_flat/logs/dbt.log (or in DBT_LOG_PATH if set)."
        )
    if results is None:
        raise TransformError(f"dbt build for {window} finished, but {missing_results(target)}")
    return _summarise(results)


def describe_summary(summary: dict[str, dict[str, int]]) -> str:
    """Counts of results as words: ``5 models (5 success); 2 seeds (2 success)``."""
    parts = []
    for kind, by_status in sorted(summary.items()):
        total = sum(by_status.values())
        statuses = ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
        parts.append(f"{total} {kind}{'' if total == 1 else 's'} ({statuses})")
    return "; ".join(parts)


def _read_artifacts(
    target_dir: Path | None, window: tuple[str, str] | None = None
) -> tuple[list[dict], dict]:
    target = target_dir or latest_run_target(which="build", window=window) or dbt_target_dir()
    results_path, manifest_path = target / "run_results.json", target / "manifest.json"
    if not results_path.exists() or not manifest_path.exists():
        raise FileNotFoundError(
            f"No dbt results in {display_path(target)}: run dbt first (the transform stage)."
        )
    results = json.loads(results_path.read_text())["results"]
    return results, json.loads(manifest_path.read_text())


def built_models(
    warehouse_path: Path,
    start: Month | str,
    end: Month | str,
    target_dir: Path | None = None,
) -> pd.DataFrame:
    """The seeds and models of dbt's last build of the window (its folder,
    :func:`latest_run_target`, unless ``target_dir`` names another): how each is materialized,
    its status, its rows.

    ``rows`` counts the whole relation; ``rows_in_window`` the rows whose ``month_key`` lies in
    ``start``..``end`` (empty for relations without months). Seeds, staging, then the marts,
    each model after those it reads: the table reads in the order data flows.
    """
    start, end = str(Month.parse(str(start))), str(Month.parse(str(end)))
    results, manifest = _read_artifacts(target_dir, (start, end))
    built = []
    for result in results:
        node = manifest["nodes"].get(result["unique_id"])
        if node is None or node["resource_type"] not in ("model", "seed"):
            continue
        built.append(
            {
                "name": node["name"],
                "materialized": node["config"]["materialized"],
                "relation": f"{node['schema']}.{node['alias']}",
                "status": result["status"],
                "_order": (
                    node["resource_type"] != "seed",
                    node["schema"] != "staging",
                    _depth(result["unique_id"], manifest["nodes"]),
                ),
            }
        )
    built.sort(key=lambda row: (row.pop("_order"), row["name"]))
    with connect(warehouse_path, read_only=True) as con:
        for row in built:
            row["rows"], row["rows_in_window"] = _count_rows(con, row["relation"], start, end)
    frame = pd.DataFrame(
        built, columns=["name", "materialized", "relation", "status", "rows", "rows_in_window"]
    )
    return frame.astype({"rows": "Int64", "rows_in_window": "Int64"})


def _depth(unique_id: str, nodes: dict) -> int:
    """Steps from the sources to a node: models come after the models they read."""
    parents = [p for p in nodes[unique_id]["depends_on"].get("nodes", []) if p in nodes]
    return 1 + max((_depth(p, nodes) for p in parents), default=0)


def _count_rows(con, relation: str, start: str, end: str) -> tuple[int | None, int | None]:
    """(rows, rows with month_key in the window or None) of ``schema.name``; None if absent."""
    schema, name = relation.split(".")
    columns = {
        column
        for (column,) in con.execute(
            "select column_name from information_schema.columns "
            "where table_schema = ? and table_name = ?",
            [schema, name],
        ).fetchall()
    }
    if not columns:
        return None, None
    if "month_key" not in columns:
        (rows,) = con.execute(f'select count(*) from "{schema}"."{name}"').fetchone()
        return rows, None
    return con.execute(
        f"select count(*), count(*) filter (where month_key between ? and ?) "
        f'from "{schema}"."{name}"',
        [start, end],
    ).fetchone()


def mart_preview(
    warehouse_path: Path,
    start: Month | str,
    end: Month | str,
    rows: int = 5,
    *,
    mart: str = "fct_resale_transactions",
) -> pd.DataFrame:
    """The first ``rows`` rows of a mart in the window, in the mart's natural order.

    Marts with months show the window only. Load ids and times, which change from run to run,
    are left out, and a delivery's path is shown as its file name (``source``).
    """
    if mart not in MART_ORDER:
        raise ValueError(f"mart={mart!r}: expected one of {', '.join(MART_ORDER)}.")
    start, end = str(Month.parse(str(start))), str(Month.parse(str(end)))
    with connect(warehouse_path, read_only=True) as con:
        columns = [
            column
            for (column,) in con.execute(
                "select column_name from information_schema.columns "
                "where table_schema = 'marts' and table_name = ? order by ordinal_position",
                [mart],
            ).fetchall()
        ]
        if not columns:
            raise FileNotFoundError(
                f"marts.{mart} is not in the warehouse yet: run the transform stage first."
            )
        where = "month_key between ? and ?" if "month_key" in columns else "true"
        params = [start, end] if "month_key" in columns else []
        frame = con.execute(
            f"select * from marts.{mart} where {where} order by {MART_ORDER[mart]} limit ?",
            [*params, rows],
        ).df()
    frame = frame.drop(columns=[c for c in _RUN_SPECIFIC_COLUMNS if c in frame.columns])
    if "_source" in frame.columns:
        frame = frame.rename(columns={"_source": "source", "_source_row": "line"})
        frame["source"] = frame["source"].map(source_name)
    return frame
