"""``make data``: download months from data.gov.sg into CSV deliveries, one file per month.

The whole dataset comes in one export through data.gov.sg's download API (initiate, poll,
then one CSV link), and is split by month; the window's months are written. Files are written
in data.gov.sg's export format (the same header and column order), so the
tap reads them like any other delivery. Each file is written to a temporary name and renamed
when complete, so an interrupted download never leaves half a month behind. ``manifest.json``
beside the files records each month's row count and SHA-256 (rewritten, atomically, after
each month, so it always describes the files present), and months that the workbook's
classroom numbers rely on are compared with ``data/reference_counts.csv``. A month that
data.gov.sg returns empty never replaces an earlier download of it: that file and its
manifest entry stay, with a warning.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from tap_hdb_resale.api import ApiError, download_dataset

from hdb_elt.settings import DATA_DIR, DATASET_ID, DEFAULT_DELIVERY_DIR, Settings, display_path
from hdb_elt.warehouse import SOURCE_COLUMNS

REFERENCE_COUNTS = DATA_DIR / "reference_counts.csv"


@dataclass
class DownloadedMonth:
    month: str
    rows: int
    sha256: str | None
    file: str | None


def delivery_name(month: str) -> str:
    return f"resale-flat-prices-{month}.csv"


def reference_counts(path: Path = REFERENCE_COUNTS) -> dict[str, int]:
    """Row counts per month of the reference download the workbook's numbers come from."""
    if not path.exists():
        return {}
    with path.open(encoding="utf-8", newline="") as handle:
        return {row["month"]: int(row["rows"]) for row in csv.DictReader(handle)}


def write_rows(month: str, rows: Iterable[list[str]], dest: Path) -> DownloadedMonth:
    """Write one month's rows atomically as a delivery; no rows writes no file."""
    final = dest / delivery_name(month)
    partial = final.with_suffix(".csv.partial")
    count = 0
    with partial.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(SOURCE_COLUMNS)
        for row in rows:
            writer.writerow(row)
            count += 1
    if count == 0:
        partial.unlink()
        return DownloadedMonth(month, 0, None, None)
    sha256 = hashlib.sha256(partial.read_bytes()).hexdigest()
    os.replace(partial, final)
    return DownloadedMonth(month, count, sha256, final.name)


def split_by_month(export: Path, months: Iterable[str]) -> dict[str, list[list[str]]]:
    """The export's rows of ``months``, in the eleven columns' order, by month. The export
    may carry a BOM, CRLF line ends and no line break after its last row, as served."""
    wanted = {month: [] for month in months}
    text = export.read_bytes().decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [column for column in SOURCE_COLUMNS if column not in (reader.fieldnames or [])]
    if missing:
        raise ApiError(
            f"The export from data.gov.sg lacks the column(s) {', '.join(missing)} (it has "
            f"{', '.join(reader.fieldnames or [])}): the dataset's format changed."
        )
    for record in reader:
        rows = wanted.get(record["month"])
        if rows is not None:
            rows.append([record[column] for column in SOURCE_COLUMNS])
    return wanted


def check_against_reference(months: list[DownloadedMonth]) -> list[str]:
    """Warnings for months whose fresh row count differs from the committed reference."""
    reference = reference_counts()
    warnings = []
    for item in months:
        expected = reference.get(item.month)
        if expected is not None and expected != item.rows:
            warnings.append(
                f"{item.month}: downloaded {item.rows:,} rows, the workbook's reference has "
                f"{expected:,}. data.gov.sg revises recent months, so classroom numbers for "
                "this month will differ from the ones in the notebooks."
            )
    return warnings


def write_manifest(path: Path, manifest: dict) -> None:
    """Write ``manifest.json`` atomically: a reader never sees half of it."""
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(partial, path)


def download_months(settings: Settings, dest: Path | str | None = None) -> list[DownloadedMonth]:
    """Download every month of the settings' window into ``dest`` (default ``data/raw/``)."""
    folder = Path(dest) if dest else DEFAULT_DELIVERY_DIR
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest.update(
        {
            "dataset_id": DATASET_ID,
            "source": f"{settings.download_api_url}/{DATASET_ID}",
            "licence": "Singapore Open Data Licence version 1.0",
        }
    )
    months = manifest.setdefault("months", {})
    downloaded_at = datetime.now(UTC).isoformat(timespec="seconds")
    results: list[DownloadedMonth] = []
    warnings: list[str] = []
    export = folder / ".dataset-export.csv"
    print(f"Downloading the dataset {DATASET_ID} from data.gov.sg (one export) ...", flush=True)
    download_dataset(
        export,
        dataset_id=DATASET_ID,
        download_api_url=settings.download_api_url,
        api_key=settings.api_key,
    )
    try:
        by_month = split_by_month(export, [str(month) for month in settings.months])
    finally:
        export.unlink(missing_ok=True)
    for month, rows in by_month.items():
        item = write_rows(month, rows, folder)
        earlier = folder / delivery_name(item.month)
        if item.rows == 0 and earlier.exists():
            warnings.append(
                f"{item.month}: data.gov.sg returned no rows, so the earlier download "
                f"{earlier.name} is kept as it was; check the month again later."
            )
            print(f"{item.month}: {0:>6,} rows  (kept the earlier {earlier.name})")
            continue
        results.append(item)
        months[item.month] = {**asdict(item), "downloaded_at": downloaded_at}
        write_manifest(manifest_path, manifest)
        print(f"{item.month}: {item.rows:>6,} rows  {item.file or '(no rows published)'}")
    write_manifest(manifest_path, manifest)
    for warning in warnings + check_against_reference(results):
        print(f"warning: {warning}")
    total = sum(item.rows for item in results)
    print(f"Downloaded {total:,} rows in {len(results)} month(s) into {display_path(folder)}.")
    return results
