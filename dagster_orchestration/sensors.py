"""The sensor: a new or changed delivery in the folder starts a run for each of its months.

A delivery is what the tap reads (``*.csv`` in any case, ``*.csv.gz``). The cursor remembers
every file's SHA-256 (with its size and modification time, so unchanged files are not read
again); a file whose content is unchanged never starts a run, and each run's key carries the
content hash, so Dagster would not start it twice either. A file still being written (an
export being copied in) starts nothing: a run starts only once the file has stopped changing,
its size and time the same on two ticks (or unchanged for longer than a tick).
"""

# No `from __future__ import annotations` here: Dagster reads the types of a check's or
# sensor's parameters (its context, its resources) when it is defined.

import csv
import gzip
import hashlib
import io
import json
import time
from pathlib import Path

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from tap_hdb_resale.deliveries import find_deliveries

from dagster_orchestration.constants import SENSOR_INTERVAL_SECONDS
from dagster_orchestration.jobs import monthly_pipeline
from dagster_orchestration.partitions import is_partition
from dagster_orchestration.resources import HdbSettings
from hdb_elt.settings import display_path


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def delivery_months(path: Path) -> list[str]:
    """The distinct values of a delivery's ``month`` column, sorted (empty without one)."""
    data = path.read_bytes()
    if path.name.lower().endswith(".gz"):
        data = gzip.decompress(data)
    text = data.decode("utf-8-sig")
    rows = csv.DictReader(io.StringIO(text, newline=""))
    return sorted({(row.get("month") or "").strip() for row in rows} - {""})


def scan(
    folder: Path, seen: dict[str, dict], now: float | None = None
) -> tuple[dict[str, dict], list[tuple[str, dict]], list[str]]:
    """Every delivery of ``folder`` as ``{name: {size, mtime_ns, sha256}}``; those new or
    changed since ``seen`` (the previous cursor) that have stopped changing, each with its
    entry; and the names of those still changing (their hash is taken once they settle)."""
    now = time.time() if now is None else now
    files: dict[str, dict] = {}
    changed: list[tuple[str, dict]] = []
    settling: list[str] = []
    for path in find_deliveries(folder):
        stat = path.stat()
        before = seen.get(path.name, {})
        entry = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        same_stat = all(before.get(key) == value for key, value in entry.items())
        quiet = now - stat.st_mtime > SENSOR_INTERVAL_SECONDS
        if not (same_stat or quiet):
            # New or changed since the last tick, and recently: it may still be growing.
            files[path.name] = {**entry, "sha256": before.get("sha256"), "settling": True}
            settling.append(path.name)
            continue
        known = same_stat and not before.get("settling") and before.get("sha256")
        entry["sha256"] = known or file_digest(path)
        files[path.name] = entry
        if entry["sha256"] != before.get("sha256"):
            changed.append((path.name, entry))
    return files, changed, settling


@sensor(
    job=monthly_pipeline,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=DefaultSensorStatus.STOPPED,
    description="Watches the delivery folder (HDB_RESALE_DATA_DIR, else data/raw/): a new or "
    "changed CSV starts a run for each month it holds.",
)
def new_deliveries(context: SensorEvaluationContext, settings: HdbSettings):
    folder = settings.delivery_dir()
    if folder is None:
        return SkipReason("No delivery folder: the pipeline reads the data.gov.sg API.")
    seen = json.loads(context.cursor) if context.cursor else {}
    files, changed, settling = scan(folder, seen)
    for name in settling:
        context.log.info(
            f"{name}: new or changed since the last tick; waiting for it to stop changing "
            "(size and time the same on the next tick) before starting a run"
        )
    requests: dict[str, RunRequest] = {}
    for name, entry in changed:
        months = delivery_months(folder / name)
        wanted = [m for m in months if is_partition(m)]
        skipped = sorted(set(months) - set(wanted))
        context.log.info(
            f"{name}: {'changed' if name in seen else 'new'} (sha256 {entry['sha256'][:12]}), "
            f"month(s) {', '.join(wanted) or 'none'}"
            + (f"; not partitions, skipped: {', '.join(skipped)}" if skipped else "")
        )
        for month in wanted:
            requests.setdefault(
                month,
                RunRequest(
                    run_key=f"{month}:{name}:{entry['sha256'][:16]}",
                    partition_key=month,
                    tags={"hdb_elt/trigger": "sensor", "hdb_elt/delivery": name},
                ),
            )
    cursor = json.dumps(files, sort_keys=True)
    if not requests:
        waiting = f"; {len(settling)} still changing, checked again next tick" if settling else ""
        return SensorResult(
            skip_reason=f"No new or changed delivery in {display_path(folder)} "
            f"({len(files)} delivery file(s) seen{waiting}).",
            cursor=cursor,
        )
    return SensorResult(run_requests=list(requests.values()), cursor=cursor)
