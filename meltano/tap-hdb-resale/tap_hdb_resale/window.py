"""The deliveries of a run's window: every file that may hold its months read and checked once,
each month with its rows (an Arrow table), row count and fingerprint.

The rows a run emits are the rows it checked: each file is read once, and nothing is read
again between the check and the load.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from tap_hdb_resale.columnar import LINE, fingerprints, read_table, split_months
from tap_hdb_resale.deliveries import (
    DeliveryError,
    check_manifest,
    month_in_name,
    read_manifest,
    scan_folder,
    wait_until_settled,
)
from tap_hdb_resale.resources import COLUMNS, resource_of

logger = logging.getLogger(__name__)

# What a stream record holds beyond the eleven source columns, in this order.
LINEAGE = ("_source", "_source_row", "_dataset_id")


@dataclass(frozen=True)
class MonthDelivery:
    """One registration month, checked, from the one file that delivered it, with its rows."""

    month: str
    path: Path
    row_count: int
    fingerprint: str
    table: pa.Table = field(repr=False, compare=False)

    def stream_table(self) -> pa.Table:
        """The month's rows as the stream sends them: the eleven columns as delivered, the
        file, the CSV line and the data.gov.sg dataset id of the month's resource."""
        rows = self.table.num_rows
        return pa.Table.from_arrays(
            [self.table.column(column) for column in COLUMNS]
            + [
                _constant(str(self.path), rows),
                self.table.column(LINE),
                _constant(resource_of(self.month).dataset_id, rows),
            ],
            names=[*COLUMNS, *LINEAGE],
        )

    def records(self, chunk_rows: int = 10_000) -> Iterator[dict]:
        """The month's rows as stream records (RECORD messages), a chunk at a time."""
        for batch in self.stream_table().to_batches(chunk_rows):
            yield from batch.to_pylist()


def _constant(value: str, rows: int) -> pa.Array:
    """``value`` on every row, dictionary-encoded: one copy of the text however many rows."""
    indices = pa.nulls(rows, pa.int32()).fill_null(0)
    return pa.DictionaryArray.from_arrays(indices, pa.array([value], pa.string()))


def stream_table(deliveries: Sequence[MonthDelivery]) -> pa.Table:
    """The rows of ``deliveries``, in their order, as one table of the stream's columns."""
    return pa.concat_tables([delivery.stream_table() for delivery in deliveries]).combine_chunks()


def collect_months(
    data_dir: Path, window: Sequence[str], log: logging.Logger = logger
) -> dict[str, MonthDelivery]:
    """Read and check every delivery that may hold months of ``window``; return those months.

    Files named for a month outside the window are skipped unread (and named in the log).
    Rows of other files whose month is outside the window are dropped (and counted in the
    log). A month delivered by two files is an error, because the run could not tell which one
    is the delivery, unless both hold exactly the same rows (a second copy of one download):
    then the first file by name is used and a warning names the copy.
    """
    wanted = set(window)
    # Each month's first delivery: (file, rows); fingerprinted together once all are read.
    found: dict[str, tuple[Path, pa.Table]] = {}
    skipped_files: list[str] = []
    scan = scan_folder(data_dir)
    for problem in scan.ignored:
        log.warning(
            "%s: %s, so it is not read (rule: the deliveries folder holds deliveries)",
            data_dir,
            problem,
        )
    paths = scan.deliveries
    if not paths:
        log.warning(
            "%s holds no deliveries (*.csv, *.csv.gz): there is nothing to extract (rule: the "
            "deliveries folder holds deliveries)",
            data_dir,
        )
    manifest = read_manifest(data_dir)
    for path in paths:
        name_month = month_in_name(path.name)
        if name_month is not None and name_month not in wanted:
            skipped_files.append(path.name)
            continue
        wait_until_settled(path, log)
        delivered = read_table(path, log)
        check_manifest(path, delivered.num_rows, manifest.get(path.name), log)
        by_month = split_months(delivered)
        outside = {month: rows for month, rows in by_month.items() if month not in wanted}
        if outside:
            log.info(
                "%s: skipped %d rows of months outside the window (%s)",
                path.name,
                sum(rows.num_rows for rows in outside.values()),
                ", ".join(f"{month}: {rows.num_rows}" for month, rows in sorted(outside.items())),
            )
        for month, rows in by_month.items():
            if month in outside:
                continue
            if month not in found:
                found[month] = (path.resolve(), rows)
                continue
            first_path, first_rows = found[month]
            line = rows.column(LINE)[0].as_py()
            if fingerprints([first_rows])[0] == fingerprints([rows])[0]:
                log.warning(
                    "%s, line %d: delivers %s with exactly the rows of %s (%d rows), so the "
                    "month is loaded once, from %s (rule: each month comes from exactly one "
                    "file in a run). Remove one of the two files.",
                    path.name,
                    line,
                    month,
                    first_path.name,
                    rows.num_rows,
                    first_path.name,
                )
                continue
            raise DeliveryError(
                path.name,
                line,
                f"rows of {month}, which {first_path.name} also delivers",
                column="month",
                rule="each month comes from exactly one file in a run",
                todo="Move one of the two files out of data_dir and run again.",
            )
    if skipped_files:
        log.info(
            "Skipped %d files named for months outside the window %s, unread: %s",
            len(skipped_files),
            f"{window[0]}..{window[-1]}" if window else "(empty)",
            ", ".join(skipped_files[:5]) + (", ..." if len(skipped_files) > 5 else ""),
        )
    months = sorted(found)
    sums = fingerprints([found[month][1] for month in months])
    deliveries = {}
    for month, fingerprint in zip(months, sums, strict=True):
        path, rows = found[month]
        deliveries[month] = MonthDelivery(month, path, rows.num_rows, fingerprint, rows)
    return deliveries
