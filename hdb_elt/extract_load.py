"""Extract-load: run Meltano (our tap into our DuckDB loader) for the settings' window.

Meltano runs as a subprocess, so the caller (a notebook, Dagster, ``make run``) never holds the
warehouse file while the loader writes it.

The warehouse is the one record of what is loaded. Before each run, the warehouse's own record
(``hdb_elt.warehouse.delivery_record``: each month's latest accepted delivery, with its rows
and fingerprint, and the deliveries the validation gate rejected) is handed to the tap, which
plans from it rather than from Meltano's state. So a copied warehouse, one restored from a
backup, a file rolled back or a lost Meltano database each load exactly the months the
warehouse lacks, and never a month twice; where Meltano's state disagreed, the summary says so.
Meltano's state is still kept, under the warehouse's identity (``--state-id-suffix``).

Meltano keeps each plugin's run files (the tap's state.json and catalog) under fixed names in
``meltano/.meltano/run/``, so two ``meltano run`` at once in this project could read each
other's state. Extract-loads started here therefore take a project-wide lock and run one at
a time (they take seconds); a second one waits for the first.

A run killed outright (SIGKILL, a power cut) leaves its Meltano job marked as running, and
Meltano would refuse the next run for this warehouse for five minutes. Such a run cannot have
changed anything (the loader commits, then hands over the state), so when no extract-load
into this warehouse is alive on this machine, the run goes ahead (``meltano run --force``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from filelock import FileLock, Timeout

from hdb_elt.settings import MELTANO_PROJECT_DIR, Settings, display_path
from hdb_elt.warehouse import (
    EXTRACT_LOADS,
    LATEST_DELIVERIES,
    RAW_TABLE,
    connect,
    delivery_record,
    describe_warehouse,
    ensure_latest_deliveries,
    ensure_warehouse,
    lock_error_from_text,
)

EXTRACTOR = "tap-hdb-resale"
LOADER = "target-hdb-duckdb"
# A summary names every month it loaded up to a year of them; a longer run, its first and last.
SHOWN_MONTHS = 12
_ERROR_HINT_RE = re.compile(r"(Error|error|Exception|refused|failed)")
# The tap's words to the user about a delivery it loaded anyway: a finding with its rule (an
# ignored column, a second copy of a month) is a warning; files or rows outside the window
# that were left unread are notes.
_NOTE_RE = re.compile(r"^Skipped \d+ files|: skipped \d+ rows")
PROJECT_LOCK = MELTANO_PROJECT_DIR / ".meltano" / "hdb-elt-extract-load.lock"
PROJECT_LOCK_TIMEOUT_SECONDS = 900.0


class ExtractLoadError(RuntimeError):
    """Meltano failed; the message carries the tap's or loader's own explanation."""

    def __init__(self, message: str, log_path: Path | None = None) -> None:
        self.log_path = log_path
        if log_path is not None:
            message += f"\nFull Meltano log: {display_path(log_path)}"
        super().__init__(message)


@dataclass(frozen=True)
class LogEvent:
    """One line of Meltano's log: who said it (a plugin's name, or None for Meltano), what."""

    plugin: str | None
    level: str
    text: str


def log_events(output: str) -> list[LogEvent]:
    """Meltano's ``--log-format json`` output (one JSON object a line) as events. A plugin's
    own output arrives line by line as the ``event`` of a line naming the plugin; a line that
    is not JSON (Python failing before Meltano's logging started) is an event of its own."""
    events = []
    for line in output.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if isinstance(entry, dict) and "event" in entry:
            events.append(LogEvent(entry.get("name"), entry.get("level", ""), str(entry["event"])))
        elif line.strip():
            events.append(LogEvent(None, "", line))
    return events


@dataclass
class ExtractLoadResult:
    """What one extract-load run put into the warehouse."""

    load_id: str | None
    rows: int
    month_rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    source: str | None = None

    def summary(self) -> str:
        """What landed and from where, then the tap's warnings about what it loaded (or could
        not) and notes on what it left unread (files or rows of months outside the window)."""
        if self.load_id is None and self.warnings:
            text = "Extract-load: nothing new loaded."
        elif self.load_id is None:
            text = "Extract-load: nothing new to load (every month in the window is up to date)."
        else:
            shown = [f"{m}: {n:,}" for m, n in self.month_rows.items()]
            if len(shown) > SHOWN_MONTHS:  # a backfill of years: its first and last months
                shown = [*shown[:3], "...", *shown[-3:]]
            months = ", ".join(shown)
            text = f"Extract-load: {self.rows:,} rows in {len(self.month_rows)} month(s) ({months})"
        return "\n".join(
            [
                text,
                *([f"Source: {self.source}."] if self.source else []),
                *(f"Warning: {warning}" for warning in self.warnings),
                *(f"Note: {note}" for note in self.notes),
            ]
        )


def meltano_executable() -> str:
    """The ``meltano`` of this interpreter's environment, else the one on PATH."""
    beside = Path(sys.executable).parent / "meltano"
    if beside.exists():
        return str(beside)
    found = shutil.which("meltano")
    if found is None:
        raise ExtractLoadError("Meltano is not installed: run `make setup` first.")
    return found


def meltano_env(settings: Settings, warehouse_months: dict | None = None) -> dict[str, str]:
    """The environment Meltano's plugins read their settings from (see meltano/meltano.yml),
    with the warehouse's record of what it holds for the tap to plan from."""
    env = settings.child_env()
    env["HDB_WAREHOUSE_MONTHS"] = json.dumps(warehouse_months) if warehouse_months else ""
    env.setdefault("HDB_RESALE_DATA_DIR", "")
    env.setdefault("DATA_GOV_SG_API_KEY", "")
    env["MELTANO_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    env["MELTANO_CLI_LOG_LEVEL"] = env.get("MELTANO_CLI_LOG_LEVEL", "info")
    # The plugins' own executables come first, then this environment's tools.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def tap_messages(events: list[LogEvent]) -> tuple[list[str], list[str]]:
    """The tap's warnings and notes about the deliveries of a run that succeeded, each once
    (the tap may meet a header twice: fingerprinting a delivery, then extracting it)."""
    warnings, notes = [], []
    for event in events:
        if event.plugin != EXTRACTOR:
            continue
        text = event.text.strip()
        if "(rule: " in text:
            found = warnings
        elif _NOTE_RE.search(text):
            found = notes
        else:
            continue
        if text not in found:
            found.append(text)
    return warnings, notes


def running_extract_loads(warehouse_id: str) -> list[int]:
    """Process ids of ``meltano run`` processes loading this warehouse on this machine."""
    import psutil

    pids = []
    for process in psutil.process_iter(["cmdline", "status"]):
        command = process.info.get("cmdline") or []
        if (
            process.pid != os.getpid()
            and process.info.get("status") != psutil.STATUS_ZOMBIE
            and warehouse_id in command
            and "run" in command
            and any(Path(part).name == "meltano" for part in command[:2])
        ):
            pids.append(process.pid)
    return sorted(pids)


@contextmanager
def project_lock(timeout: float = PROJECT_LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
    """Hold the Meltano project's lock: one extract-load at a time in ``meltano/``.

    A ``filelock`` lock (an ``flock``) on a file beside Meltano's run files: the operating
    system releases it when the holder exits, however it exits, so a killed run never leaves
    it held.
    """
    PROJECT_LOCK.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(PROJECT_LOCK)
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise ExtractLoadError(
            f"Another extract-load in this project has run for over {timeout:.0f} s "
            f"(it holds {display_path(PROJECT_LOCK)}): Meltano runs one at a time "
            "here. Wait for it, or stop it, then run again."
        ) from None
    try:
        yield
    finally:
        lock.release()


def latest_loads(warehouse_path: Path) -> set[str]:
    with connect(warehouse_path, read_only=True) as con:
        return {row[0] for row in con.execute("select load_id from raw._loads").fetchall()}


def explain_failure(events: list[LogEvent]) -> str:
    """The lines of Meltano's log that say what went wrong, without the noise around them."""
    lines = [event.text.rstrip() for event in events]
    for marker in (
        "DeliveryError",
        "ApiError",
        "ConfigValidationError",
        "LoaderError",
        "IncompleteStreamError",
        "WarehouseLocked",
    ):
        hits = [line for line in lines if marker in line]
        if hits:
            return _unqualified(hits[-1])
    hits = [line for line in lines if _ERROR_HINT_RE.search(line) and "Traceback" not in line]
    if hits:
        return "\n".join(_unqualified(line) for line in hits[-3:])
    return "Meltano exited with an error and printed no explanation."


def _unqualified(line: str) -> str:
    # "tap_hdb_resale.deliveries.DeliveryError: ..." -> "DeliveryError: ..."
    return re.sub(r"^(?:\w+\.)+(\w+(?:Error|Exception))", r"\1", line.strip()).strip()


def run_extract_load(settings: Settings, *, log_dir: Path | None = None) -> ExtractLoadResult:
    """Run ``meltano run tap-hdb-resale target-hdb-duckdb`` and report what landed."""
    with project_lock():
        return _run_extract_load(settings, log_dir)


def _run_extract_load(settings: Settings, log_dir: Path | None) -> ExtractLoadResult:
    started = time.perf_counter()
    warehouse_id = ensure_warehouse(settings.warehouse_path)
    before = latest_loads(settings.warehouse_path)
    record = delivery_record(settings.warehouse_path)
    alive = running_extract_loads(warehouse_id)
    if alive:
        raise ExtractLoadError(
            "Another extract-load into the warehouse "
            f"{describe_warehouse(settings.warehouse_path)} is running (process "
            f"{', '.join(map(str, alive))}): wait for it to finish, then run again."
        )
    command = [
        meltano_executable(),
        "--log-format=json",  # one JSON object a line, each plugin line its own event
        "run",
        "--state-id-suffix",
        warehouse_id,
        # No run for this warehouse is alive, so a job Meltano still marks as running was
        # killed, and changed nothing: do not wait five minutes for Meltano to expire it.
        "--force",
        EXTRACTOR,
        LOADER,
    ]
    completed = subprocess.run(
        command,
        cwd=MELTANO_PROJECT_DIR,
        env=meltano_env(settings, record),
        capture_output=True,
        text=True,
        check=False,
    )
    output = completed.stdout + completed.stderr
    events = log_events(output)
    log_path = None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / "meltano.log"
        log_path.write_text(output)
    if completed.returncode != 0:
        locked = lock_error_from_text(
            settings.warehouse_path, "\n".join(event.text for event in events)
        )
        if locked is not None:
            raise locked
        raise ExtractLoadError(
            "Extract-load failed; the warehouse and Meltano's state are unchanged.\n"
            + explain_failure(events),
            log_path,
        )
    warnings, notes = tap_messages(events)
    new = sorted(latest_loads(settings.warehouse_path) - before)
    result = ExtractLoadResult(
        None,
        0,
        {},
        warnings=warnings,
        notes=notes,
        source=settings.source_label,
    )
    if new:
        result.load_id = new[-1]
        with connect(settings.warehouse_path, read_only=True) as con:
            result.month_rows = dict(
                con.execute(
                    f"select month, count(*) from {RAW_TABLE} where _load_id = ? "
                    "group by month order by month",
                    [result.load_id],
                ).fetchall()
            )
        result.rows = sum(result.month_rows.values())
    result.seconds = time.perf_counter() - started
    record_extract_load(settings.warehouse_path, result)
    return result


def record_extract_load(warehouse_path: Path, result: ExtractLoadResult) -> None:
    """Keep what a run said (its source, load and the tap's warnings and notes) in
    ``audit.extract_loads``, so an orchestrator's summary can repeat it (see
    :func:`last_extract_load`)."""
    with connect(warehouse_path) as con:
        con.execute(
            f"insert into {EXTRACT_LOADS} values (timezone('UTC', now()), ?, ?, ?, ?, ?)",
            [result.load_id, result.rows, result.source, result.warnings, result.notes],
        )


def last_extract_load(warehouse_path: Path) -> dict | None:
    """What the last extract-load into this warehouse said (None before the first)."""
    with connect(warehouse_path, read_only=True) as con:
        row = con.execute(
            f"""select load_id, row_count, source, warnings, notes from {EXTRACT_LOADS}
                order by finished_at desc limit 1"""
        ).fetchone()
    if row is None:
        return None
    return dict(zip(("load_id", "rows", "source", "warnings", "notes"), row, strict=True))


def latest_delivery_counts(warehouse_path: Path) -> dict[str, int]:
    """Rows per month in the latest accepted delivery of each month (``raw.latest_deliveries``):
    what downstream reads."""
    ensure_latest_deliveries(warehouse_path)
    with connect(warehouse_path, read_only=True) as con:
        rows = con.execute(
            f"select month, count(*) from {LATEST_DELIVERIES} group by month order by month"
        ).fetchall()
    return dict(rows)


def state_id(warehouse_id: str) -> str:
    """Meltano's state id for this warehouse (environment ``dev``)."""
    return f"dev:{EXTRACTOR}-to-{LOADER}:{warehouse_id}"


def read_state(settings: Settings) -> dict | None:
    """The incremental state Meltano keeps for this warehouse, or None before the first load."""
    warehouse_id = ensure_warehouse(settings.warehouse_path)
    completed = subprocess.run(
        [meltano_executable(), "state", "get", state_id(warehouse_id)],
        cwd=MELTANO_PROJECT_DIR,
        env=meltano_env(settings),
        capture_output=True,
        text=True,
        check=False,
    )
    text = completed.stdout.strip()
    if completed.returncode != 0 or not text.startswith("{"):
        return None
    return json.loads(text)


def load_overview(warehouse_path: Path, load_id: str) -> pd.DataFrame:
    """Rows per month and delivery file of one load, for a notebook to show."""
    with connect(warehouse_path, read_only=True) as con:
        frame = con.execute(
            f"""select month, _source as source, count(*) as rows
                from {RAW_TABLE} where _load_id = ?
                group by all order by month, source""",
            [load_id],
        ).df()
    frame["source"] = frame["source"].map(source_name)
    return frame


def raw_sample(warehouse_path: Path, load_id: str, rows: int = 5) -> pd.DataFrame:
    """The first rows of a load as delivered (text), with where each came from."""
    with connect(warehouse_path, read_only=True) as con:
        frame = con.execute(
            f"""select _source as source, _source_row as line, * exclude (_source, _source_row,
                    _load_id, _loaded_at, _dataset_id)
                from {RAW_TABLE} where _load_id = ?
                order by month, _source, _source_row limit ?""",
            [load_id, rows],
        ).df()
    frame["source"] = frame["source"].map(source_name)
    return frame


def loaded_deliveries(warehouse_path: Path) -> pd.DataFrame:
    """The warehouse's own record of what is loaded, month by month (what the next run compares
    deliveries with): the latest accepted delivery's rows, file and fingerprint, and how many
    deliveries of the month raw holds and the gate rejected."""
    record = delivery_record(warehouse_path)
    with connect(warehouse_path, read_only=True) as con:
        counts = dict(
            con.execute("select month, count(*) from raw._load_months group by month").fetchall()
        )
        sources = dict(
            con.execute(
                f"""select month, any_value(source) from raw._load_months
                   where (load_id, month) in (select distinct _load_id, month
                                              from {LATEST_DELIVERIES})
                   group by month"""
            ).fetchall()
        )
    return pd.DataFrame(
        [
            {
                "month": month,
                "rows": entry["rows"],
                "file": source_name(sources[month]) if sources.get(month) else "-",
                "fingerprint": (entry["fingerprint"] or "")[:12],
                "deliveries": counts.get(month, 0),
                "rejected": len(entry["rejected"]),
            }
            for month, entry in record.items()
        ],
        columns=["month", "rows", "file", "fingerprint", "deliveries", "rejected"],
    )


def state_months(state: dict | None) -> pd.DataFrame:
    """Meltano's state for this warehouse as a table: month, rows, content fingerprint."""
    months = {}
    if state:
        bookmarks = state.get("singer_state", state).get("bookmarks", {})
        months = bookmarks.get("resale_flat_prices", {}).get("months", {})
    return pd.DataFrame(
        [
            {
                "month": month,
                "rows": entry.get("rows"),
                "fingerprint": (entry.get("fingerprint") or "")[:12],
            }
            for month, entry in sorted(months.items())
        ],
        columns=["month", "rows", "fingerprint"],
    )


def source_name(source: str) -> str:
    """A delivery's file name, or the API URL without its host's noise: no local paths shown."""
    if source.startswith(("http://", "https://")):
        return source
    return Path(source).name


def newest_load_id(warehouse_path: Path, start_month: str, end_month: str) -> str | None:
    """The load that last brought rows of the window (None: raw holds none): what a notebook
    shows when its own run found nothing new to load."""
    with connect(warehouse_path, read_only=True) as con:
        row = con.execute(
            f"""select _load_id from {RAW_TABLE} where month between ? and ?
                order by _loaded_at desc limit 1""",
            [str(start_month), str(end_month)],
        ).fetchone()
    return row[0] if row else None
