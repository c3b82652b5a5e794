"""Meltano's log is long; the error a learner sees is the one line that explains the failure."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import hdb_elt.extract_load as extract_load
from hdb_elt.extract_load import (
    ExtractLoadError,
    ExtractLoadResult,
    explain_failure,
    log_events,
    tap_messages,
)
from hdb_elt.warehouse import WarehouseLockedError, describe_process, lock_error_from_text


def meltano_log(*lines: tuple[str | None, str, str]) -> str:
    """Meltano's ``--log-format=json`` output: (plugin or None for Meltano, level, text) a line,
    each with the fields a real line carries besides."""
    return "".join(
        json.dumps(
            {"event": text, "level": level, "timestamp": "2026-11-29T18:40:12.04Z"}
            | ({"stdio": "stderr", "name": plugin, "cmd_type": "elb"} if plugin else {})
        )
        + "\n"
        for plugin, level, text in lines
    )


TAP, TARGET = "tap-hdb-resale", "target-hdb-duckdb"
MELTANO_OUTPUT = meltano_log(
    (None, "info", "Running job with name 'dev:tap-hdb-resale-to-target-hdb-duckdb:1c01'"),
    (TAP, "info", "Traceback (most recent call last):"),
    (TAP, "info", '  File "streams.py", line 80, in get_records'),
    (TAP, "info", "tap_hdb_resale.deliveries.DeliveryError: resale-flat-prices-2023-02.csv, line 5, column resale_price: 'abc' is not a number (rule: resale_price must be numeric)."),
    (TARGET, "info", "ERROR target-hdb-duckdb: The input stopped after 0 records"),
    (None, "error", "Extractor failed"),
)  # fmt: skip


def test_the_tap_error_is_picked_out_of_meltano_output() -> None:
    assert explain_failure(log_events(MELTANO_OUTPUT)) == (
        "DeliveryError: resale-flat-prices-2023-02.csv, line 5, column resale_price: "
        "'abc' is not a number (rule: resale_price must be numeric)."
    )


def test_without_a_known_error_the_last_error_lines_are_shown() -> None:
    output = meltano_log((None, "info", "Something odd"), (None, "error", "Loader failed"))
    text = explain_failure(log_events(output + "Traceback (most recent call last):\n"))
    assert "Loader failed" in text


# The tap reads a header twice (fingerprinting the delivery, then extracting it), so it may
# say the same thing twice: the summary says it once.
IGNORED_COLUMN = (
    "resale-flat-prices-2023-03.csv, line 1: column(s) 'remarks' are not among the eleven the "
    "raw layer keeps, so they are not loaded (rule: the header names the eleven columns; others "
    "are ignored)"
)
SUCCESS_OUTPUT = meltano_log(
    (TAP, "info", IGNORED_COLUMN),
    (TAP, "info", IGNORED_COLUMN),
    (TAP, "info", "Skipped 1 files named for months outside the window 2023-01..2023-03, unread: resale-flat-prices-2023-07.csv"),
    (TAP, "info", "Months to extract: new: 2023-03; changed: none; lookback: none. Skipped as unchanged: none."),
    (None, "warning", "A note from Meltano itself (rule: not the tap's)"),
    (TARGET, "info", "INFO target-hdb-duckdb: Loaded 2277 rows into stream resale_flat_prices as load 197b"),
)  # fmt: skip


def test_the_taps_warnings_and_notes_reach_the_summary() -> None:
    warnings, notes = tap_messages(log_events(SUCCESS_OUTPUT))
    assert warnings == [
        "resale-flat-prices-2023-03.csv, line 1: column(s) 'remarks' are not among the eleven "
        "the raw layer keeps, so they are not loaded (rule: the header names the eleven columns; "
        "others are ignored)"
    ]
    assert notes == [
        "Skipped 1 files named for months outside the window 2023-01..2023-03, unread: "
        "resale-flat-prices-2023-07.csv"
    ]
    result = ExtractLoadResult("x", 2277, {"2023-03": 2277}, warnings=warnings, notes=notes)
    assert result.summary().splitlines() == [
        "Extract-load: 2,277 rows in 1 month(s) (2023-03: 2,277)",
        f"Warning: {warnings[0]}",
        f"Note: {notes[0]}",
    ]


LOCKED_OUTPUT = """\
2026-11-24T06:22:11.6Z [info     ] target-hdb-duckdb _duckdb.IOException: IO Error: Could not set lock on file "/data/w.duckdb": Conflicting lock is held in /usr/bin/python3.11 (PID 4242) by user ann. See also https://duckdb.org/docs/current/connect/concurrency
"""


def test_a_lock_met_by_meltanos_loader_or_dbt_is_explained() -> None:
    error = lock_error_from_text(Path("/data/w.duckdb"), LOCKED_OUTPUT)
    assert isinstance(error, WarehouseLockedError)
    assert error.pid == 4242
    assert "is locked by process 4242 (python3.11)" in str(error)  # no such process here
    assert "`kill 4242`" in str(error)
    assert lock_error_from_text(Path("/data/w.duckdb"), "Loader failed: disk full") is None


@pytest.mark.parametrize(
    ("extra", "described"),
    [(["-m", "ipykernel_launcher"], "a Jupyter kernel"), ([], "python3.11")],
)
def test_the_holder_is_named_when_it_is_a_known_tool(extra: list[str], described: str) -> None:
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *extra])
    try:
        # Until the child has exec'd, its command line is still the parent's (pytest's).
        deadline = time.monotonic() + 30
        while "time.sleep" not in " ".join(psutil.Process(holder.pid).cmdline()):
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.05)
        assert describe_process(holder.pid, "python3.11") == described
    finally:
        holder.kill()
        holder.wait()
    assert describe_process(holder.pid, "python3.11") == "python3.11"  # gone


def test_extract_loads_in_one_project_run_one_at_a_time(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(extract_load, "PROJECT_LOCK", tmp_path / "lock")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, sys, time; h = open(sys.argv[1], 'a'); fcntl.flock(h, fcntl.LOCK_EX); "
         "print('held', flush=True); time.sleep(60)", str(tmp_path / "lock")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        waiting = pytest.raises(ExtractLoadError, match="Meltano runs one at a time here")
        with waiting, extract_load.project_lock(timeout=0.3):
            pass
    finally:
        holder.kill()
        holder.wait()
    with extract_load.project_lock(timeout=5):  # released when its holder died
        pass


def test_no_other_extract_load_of_this_warehouse_is_running() -> None:
    assert extract_load.running_extract_loads("no-such-warehouse-id") == []


def test_a_backfill_of_years_names_its_first_and_last_months() -> None:
    months = {f"{year}-{month:02d}": 2 for year in (1990, 1991) for month in range(1, 13)}
    summary = ExtractLoadResult("x", 48, months).summary()
    assert summary == (
        "Extract-load: 48 rows in 24 month(s) (1990-01: 2, 1990-02: 2, 1990-03: 2, ..., "
        "1991-10: 2, 1991-11: 2, 1991-12: 2)"
    )
    a_year = dict(list(months.items())[:12])
    assert "1990-06: 2, 1990-07: 2" in ExtractLoadResult("x", 24, a_year).summary()
