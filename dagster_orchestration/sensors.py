"""The sensor: a new or changed CSV in the delivery folder starts a run for each of its months.

The cursor remembers every file's SHA-256 (with its size and modification time, so unchanged
files are not read again); a file whose content is unchanged never starts a run, and each run's
key carries the content hash, so Dagster would not start it twice either.
"""

# No `from __future__ import annotations` here: Dagster reads the types of a check's or
# sensor's parameters (its context, its resources) when it is defined.

import csv
import hashlib
import json
from pathlib import Path

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

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
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return sorted({(row.get("month") or "").strip() for row in csv.DictReader(handle)} - {""})


def scan(folder: Path, seen: dict[str, dict]) -> tuple[dict[str, dict], list[tuple[str, dict]]]:
    """Every CSV of ``folder`` as ``{name: {size, mtime_ns, sha256}}``, and those new or changed
    since ``seen`` (the previous cursor), each with its entry."""
    files: dict[str, dict] = {}
    changed: list[tuple[str, dict]] = []
    for path in sorted(folder.glob("*.csv")):
        stat = path.stat()
        before = seen.get(path.name, {})
        entry = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        same_file = all(before.get(key) == value for key, value in entry.items())
        entry["sha256"] = before["sha256"] if same_file else file_digest(path)
        files[path.name] = entry
        if entry["sha256"] != before.get("sha256"):
            changed.append((path.name, entry))
    return files, changed


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
    files, changed = scan(folder, seen)
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
        return SensorResult(
            skip_reason=f"No new or changed delivery in {display_path(folder)} "
            f"({len(files)} CSV file(s) seen).",
            cursor=cursor,
        )
    return SensorResult(run_requests=list(requests.values()), cursor=cursor)
