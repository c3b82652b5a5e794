"""``make data``: download months from data.gov.sg into CSV deliveries, one file per month.

data.gov.sg publishes the resale prices in five resources, one per period since 1990
(tap_hdb_resale.resources). Each resource the window touches comes in one export through
data.gov.sg's download API (initiate, poll, then one CSV link), and is split by month; the
window's months are written. Files are written in their resource's export format (its header
and column order: the ten columns without ``remaining_lease`` before 2015), so raw keeps each
row as delivered and the tap reads them like any other delivery. Each file is written to a
temporary name and renamed when complete, so an interrupted download never leaves half a month
behind. ``manifest.json`` beside the files records each month's row count, SHA-256 and dataset
id (rewritten, atomically, after each month, so it always describes the files present), and
months that the workbook's classroom numbers rely on are compared with
``data/reference_counts.csv``. A month that data.gov.sg returns empty never replaces an
earlier download of it: that file and its manifest entry stay, with a warning.
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

from tap_hdb_resale.api import ApiError, download_dataset, download_pacer
from tap_hdb_resale.resources import Resource, resources_between

from hdb_elt.settings import DATA_DIR, DEFAULT_DELIVERY_DIR, Settings, display_path

REFERENCE_COUNTS = DATA_DIR / "reference_counts.csv"


@dataclass
class DownloadedMonth:
    month: str
    rows: int
    sha256: str | None
    file: str | None
    dataset_id: str | None = None


def delivery_name(month: str) -> str:
    return f"resale-flat-prices-{month}.csv"


def reference_counts(path: Path = REFERENCE_COUNTS) -> dict[str, int]:
    """Row counts per month of the reference download the workbook's numbers come from."""
    if not path.exists():
        return {}
    with path.open(encoding="utf-8", newline="") as handle:
        return {row["month"]: int(row["rows"]) for row in csv.DictReader(handle)}


def write_rows(
    month: str, rows: Iterable[list[str]], dest: Path, resource: Resource
) -> DownloadedMonth:
    """Write one month's rows atomically as a delivery in its resource's format (its header);
    no rows writes no file."""
    final = dest / delivery_name(month)
    partial = final.with_suffix(".csv.partial")
    count = 0
    with partial.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(resource.columns)
        for row in rows:
            writer.writerow(row)
            count += 1
    if count == 0:
        partial.unlink()
        return DownloadedMonth(month, 0, None, None, resource.dataset_id)
    sha256 = hashlib.sha256(partial.read_bytes()).hexdigest()
    os.replace(partial, final)
    return DownloadedMonth(month, count, sha256, final.name, resource.dataset_id)


def split_by_month(
    export: Path, months: Iterable[str], resource: Resource
) -> dict[str, list[list[str]]]:
    """The export's rows of ``months``, in its resource's columns and order, by month, values
    as delivered. The export may carry a BOM, CRLF line ends and no line break after its last
    row, as served."""
    wanted = {month: [] for month in months}
    text = export.read_bytes().decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    found = reader.fieldnames or []
    missing = [column for column in resource.columns if column not in found]
    if missing:
        raise ApiError(
            f"The export of dataset {resource.dataset_id} ({resource.title}) from data.gov.sg "
            f"lacks the column(s) {', '.join(missing)} (it has {', '.join(found)}): the "
            "dataset's format changed."
        )
    for record in reader:
        rows = wanted.get(record["month"])
        if rows is not None:
            rows.append([record[column] for column in resource.columns])
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
    """Download every month of the settings' window into ``dest`` (default ``data/raw/``):
    one export of each resource the window touches (all five for 1990-01 onwards)."""
    folder = Path(dest) if dest else DEFAULT_DELIVERY_DIR
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    window = [str(month) for month in settings.months]
    resources = resources_between(window[0], window[-1])
    # A manifest written when make data read one resource named it at the top; each file's
    # entry names its dataset now.
    manifest.pop("dataset_id", None)
    manifest.pop("source", None)
    manifest["licence"] = "Singapore Open Data Licence version 1.0"
    sources = manifest.setdefault("resources", {})
    months = manifest.setdefault("months", {})
    downloaded_at = datetime.now(UTC).isoformat(timespec="seconds")
    results: list[DownloadedMonth] = []
    warnings: list[str] = []
    export = folder / ".dataset-export.csv"
    pacer = download_pacer()  # the exports share the download API's quota
    for resource in resources:
        wanted = [month for month in window if resource.holds(month)]
        print(
            f"Downloading {resource.title} (dataset {resource.dataset_id}, for "
            f"{wanted[0]}..{wanted[-1]}) from data.gov.sg (one export) ...",
            flush=True,
        )
        download_dataset(
            export,
            dataset_id=resource.dataset_id,
            download_api_url=settings.download_api_url,
            api_key=settings.api_key,
            pacer=pacer,
        )
        sources[resource.dataset_id] = {
            "title": resource.title,
            "source": f"{settings.download_api_url}/{resource.dataset_id}",
            "downloaded_at": downloaded_at,
        }
        try:
            by_month = split_by_month(export, wanted, resource)
        finally:
            export.unlink(missing_ok=True)
        for month, rows in by_month.items():
            item = write_rows(month, rows, folder, resource)
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
