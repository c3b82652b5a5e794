"""Runs killed outright (SIGKILL, no chance to clean up) in the middle of their work.

The stage runs as a process of its own, in its own process group, exactly as ``make`` or a
notebook runs it; the test waits until the work is under way, then kills the whole group.
Nothing of the killed run may be visible afterwards (DuckDB's transaction is never
committed), Meltano's state must not move, and the next run must complete with marts equal
to a clean run's.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from faults.support import (
    LOAD_COLUMNS,
    Pipeline,
    delivery_name,
    fact_checksums_by_month,
    latest_counts,
    mart_checksums,
    meltano_state,
    raw_snapshot,
    state_matches_raw,
)
from hdb_elt.extract_load import read_state
from hdb_elt.settings import REPO_ROOT

pytestmark = pytest.mark.slow

MARCH = delivery_name("2023-03")
POLL_SECONDS = 0.01


def start_stage(pipeline: Pipeline, code: str, **env: str) -> subprocess.Popen:
    """``python -c code`` with the pipeline's environment, leader of a new process group."""
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env={**os.environ, **pipeline.environment(), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill_when(process: subprocess.Popen, ready: Callable[[], bool], timeout: float = 300) -> None:
    """SIGKILL the process's whole group as soon as ``ready()``; fail if it ends first.
    Returns once every killed process has exited (and so released its files and locks)."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            output = process.stdout.read().decode(errors="replace")
            pytest.fail(f"the stage ended before the moment to kill it:\n{output[-2000:]}")
        if time.monotonic() > deadline:
            break
        time.sleep(POLL_SECONDS)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    process.stdout.close()
    # Children of the group (Meltano, the tap, the loader, dbt) die with it. An exited process
    # may linger as a zombie until it is reaped, but it holds no file any more.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and group_members(process.pid):
        time.sleep(0.1)
    assert not group_members(process.pid)


def group_members(pgid: int) -> list[int]:
    """Processes of the group that have not finished exiting. A process whose main thread has
    exited shows as a zombie while its other threads (DuckDB's, dbt's) still close its files,
    so a zombie counts until it has no thread left."""
    members = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) != pgid:
                continue
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE or _threads(pid) > 1:
                members.append(pid)
        except ProcessLookupError:
            continue
        except psutil.Error:
            members.append(pid)  # there, but not readable yet: still exiting
    return members


def _threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError:  # gone, or no /proc (macOS: a zombie there has no threads)
        return 0


def descendant(process: subprocess.Popen, match: Callable[[list[str]], bool]):
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        return None
    for child in children:
        try:
            if match(child.cmdline()):
                return child
        except psutil.Error:
            continue
    return None


def is_tap_sync(command: list[str]) -> bool:
    return any(Path(part).name == "tap-hdb-resale" for part in command[:2]) and (
        "--discover" not in command
    )


def test_sigkill_during_the_load_commits_nothing_and_the_next_run_completes(
    pipeline: Pipeline, reference, shared_monthly: Path
) -> None:
    shutil.copy(shared_monthly / MARCH, pipeline.deliveries / MARCH)
    raw_before, marts_before = raw_snapshot(pipeline.warehouse), mart_checksums(pipeline.warehouse)
    state_before = read_state(pipeline.settings())  # as Meltano itself reports it
    written: dict[str, int] = {}

    def loader_is_inserting() -> bool:
        # The tap can only write as fast as the loader reads (pipes hold ~64 KB each, so
        # under 200 KB between them): once it has written 600 KB of its ~1.1 MB of records,
        # the loader has taken in hundreds of records and, one per batch, inserted them, and
        # the tap has not finished, so nothing can have been committed.
        tap = descendant(process, is_tap_sync)
        if tap is None:
            return False
        try:
            written["bytes"] = tap.io_counters().write_chars
        except psutil.Error:
            return False
        return written["bytes"] > 600_000

    # The stage as `make extract-load` runs it, the tap sending RECORD messages and the loader
    # inserting every record on its own (batch_size_rows 1), so the load takes long enough to
    # be caught in the middle. (A BATCH file killed mid-load: target-hdb-duckdb's tests.)
    process = start_stage(
        pipeline,
        "import sys; from classroom.cli import main; sys.exit(main(['extract-load']))",
        TARGET_HDB_DUCKDB_BATCH_SIZE_ROWS="1",
        TAP_HDB_RESALE_BATCH_MESSAGES="false",
    )
    kill_when(process, loader_is_inserting)
    assert written["bytes"] > 600_000

    assert raw_snapshot(pipeline.warehouse) == raw_before  # no row, no raw._loads entry
    assert read_state(pipeline.settings()) == state_before
    assert meltano_state(pipeline)["partial"] == {}
    assert mart_checksums(pipeline.warehouse) == marts_before

    # Meltano still marks the killed job as running; the next run goes ahead regardless.
    outcome = pipeline.run()
    assert outcome.stage is None, outcome.message
    assert outcome.extract.month_rows == {"2023-03": 2277}
    assert mart_checksums(pipeline.warehouse, ignore=LOAD_COLUMNS) == reference.marts
    state_matches_raw(pipeline)


def test_a_load_whose_state_was_lost_is_not_loaded_again(
    pipeline: Pipeline, reference, shared_monthly: Path
) -> None:
    """Killed after the commit, before Meltano stored the state: raw is ahead of the state,
    never behind it. The warehouse's own record says the month is loaded, so it is not
    extracted again, and the run says the state disagreed."""
    shutil.copy(shared_monthly / MARCH, pipeline.deliveries / MARCH)
    saved = pipeline.root / "meltano-before.db"
    shutil.copy(pipeline.meltano_db, saved)
    assert pipeline.run(build=False).stage is None
    shutil.copy(saved, pipeline.meltano_db)  # the state as if Meltano never heard back
    assert "2023-03" not in meltano_state(pipeline)["months"]

    again = pipeline.run()
    assert again.extract.load_id is None
    assert (
        "Warning: The warehouse holds 2023-03, which Meltano's state does not record"
    ) in again.message
    assert raw_snapshot(pipeline.warehouse)["rows"] == 2552 + 1837 + 2277
    assert latest_counts(pipeline.warehouse) == reference.counts
    assert mart_checksums(pipeline.warehouse, ignore=LOAD_COLUMNS) == reference.marts
    state_matches_raw(pipeline)


def test_sigkill_while_dbt_builds_the_fact_rolls_back_and_a_rebuild_equals_a_clean_run(
    pipeline: Pipeline, reference, shared_monthly: Path, tmp_path: Path
) -> None:
    shutil.copy(shared_monthly / MARCH, pipeline.deliveries / MARCH)
    assert pipeline.run(build=False).stage is None  # 2023-03 landed and passed the gate
    marts_before = mart_checksums(pipeline.warehouse)
    fact_before = fact_checksums_by_month(pipeline.warehouse)

    log = tmp_path / "dbt-logs" / "dbt.log"

    def building_the_fact() -> bool:
        try:
            text = log.read_text(errors="replace")
        except FileNotFoundError:
            return False
        return "START sql incremental model marts.fct_resale_transactions" in text

    # The transform stage (dbt build of the window) as the 03 notebook runs it.
    process = start_stage(
        pipeline,
        "from hdb_elt.settings import load_settings\n"
        "from hdb_elt.transform import build_models\n"
        "build_models(load_settings())",
        DBT_LOG_PATH=str(log.parent),
    )
    kill_when(process, building_the_fact)
    text = log.read_text(errors="replace")
    assert "OK created sql incremental model marts.fct_resale_transactions" not in text

    # Whatever dbt had done to the fact was one uncommitted transaction: gone.
    assert mart_checksums(pipeline.warehouse) == marts_before
    assert fact_checksums_by_month(pipeline.warehouse) == fact_before

    assert not pipeline.transform()  # the rebuild
    assert mart_checksums(pipeline.warehouse, ignore=LOAD_COLUMNS) == reference.marts
    fact_after = fact_checksums_by_month(pipeline.warehouse)
    assert {month: fact_after[month] for month in fact_before} == fact_before
