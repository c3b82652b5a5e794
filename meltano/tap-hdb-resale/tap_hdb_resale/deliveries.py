"""Read and check CSV deliveries in data.gov.sg's export format (files mode).

A delivery is checked completely before any of its rows is used, and every problem stops the
run with a :class:`DeliveryError` naming the file, line, column and rule: a raw layer that
silently loaded half a file, or shifted columns, would be worse than no load at all.
Values are never converted: the raw layer keeps them exactly as delivered. This module's
reader goes row by row and is the reference: ``columnar.py`` reads the common files a column
at a time, and hands it any file it cannot vouch for.

Every entry of the deliveries folder is accounted for: ``*.csv`` in any case and ``*.csv.gz``
are deliveries; anything else is named in a warning (or refused, when its name says it is a
delivery that cannot be read). A cut-short or still-growing file is caught by evidence, not by
its last byte: a row with too few fields or an unreadable last value, the ``manifest.json``
that ``make data`` writes beside its downloads, a file that is still changing when the run
looks at it, and (in the stream) a month far smaller than its previous delivery.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import json
import logging
import re
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tap_hdb_resale.formats import (
    REDOWNLOAD,
    DeliveryError,
    check_header,
    check_resource,
    check_row,
    value_problem,
)
from tap_hdb_resale.months import MonthError, parse_month
from tap_hdb_resale.resources import COLUMNS

# A month in a file name, such as resale-flat-prices-2023-05.csv.
_NAME_MONTH_RE = re.compile(r"(?<!\d)\d{4}-\d{2}(?!\d)")
# Files that may sit beside the deliveries without being one (make data's manifest, notes).
COMPANION_RE = re.compile(r"^(manifest\.json|readme(\.\w+)?|licen[cs]e(\.\w+)?)$", re.IGNORECASE)
# A name that says "I am a delivery": such a file that cannot be read is an error, not a note.
DELIVERY_NAME_RE = re.compile(r"^resale[-_ ]flat[-_ ]prices", re.IGNORECASE)
DELIVERY_SUFFIXES = (".csv", ".csv.gz")
# A file modified less than this long ago may still be being written: wait until it is quiet.
SETTLE_SECONDS = 2.0
SETTLE_TIMEOUT_SECONDS = 60.0

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Row:
    """One data row: its CSV line number (header = line 1) and the eleven values as text,
    None for a column its resource does not have (``remaining_lease`` before 2015)."""

    line: int
    values: tuple[str | None, ...]

    @property
    def month(self) -> str:
        return self.values[0]  # type: ignore[return-value]

    def as_record(self) -> dict[str, str | None]:
        return dict(zip(COLUMNS, self.values, strict=True))


def month_in_name(name: str) -> str | None:
    """The month a file is named for, or None when its name holds no (or several) months."""
    tokens = set(_NAME_MONTH_RE.findall(name))
    if len(tokens) != 1:
        return None
    token = tokens.pop()
    try:
        return parse_month(token)
    except MonthError as error:
        raise DeliveryError(
            name,
            None,
            f"the file name holds {error}",
            rule="a month in a file name is the month of its rows",
            todo="Rename the file.",
        ) from None


def fingerprint(rows: Sequence[Row]) -> str:
    """SHA-256 of the rows' values in delivery order: BOM, line endings and column order
    (which are not content) do not change it, any changed, added or removed row does."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row.values, ensure_ascii=False).encode() + b"\n")
    return digest.hexdigest()


def read_bytes(path: Path) -> bytes:
    """The delivery's bytes, decompressed when it is a ``.gz``; an unreadable or cut-short
    file raises :class:`DeliveryError`."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DeliveryError(
            path.name,
            None,
            f"cannot be read: {error.strerror or error}",
            rule="delivery files must be readable",
            todo="Check that the file exists and its permissions let you read it.",
        ) from None
    if path.name.lower().endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as error:
            raise DeliveryError(
                path.name,
                None,
                f"is not a complete gzip file ({error})",
                rule="a .csv.gz delivery is a gzip-compressed CSV",
                todo="Download or copy it again; it may have been cut short.",
            ) from None
    return data


def _decode(path: Path) -> str:
    """The file's text: UTF-8, with or without a byte order mark."""
    data = read_bytes(path)
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as error:
        offset = skip + error.start
        raise DeliveryError(
            path.name,
            data.count(b"\n", 0, offset) + 1,
            f"byte {data[offset]:#04x} at byte offset {offset} is not valid UTF-8",
            rule="deliveries are UTF-8 text",
            todo="Save or export the file as UTF-8 CSV, or download it again with `make data`.",
        ) from None


def read_delivery(path: Path, log: logging.Logger = logger, *, check: bool = True) -> list[Row]:
    """Read one CSV delivery and check every row; raise :class:`DeliveryError` on any problem.

    A file named for a month (``...-2023-05.csv``) must hold only that month's rows. A last
    line without a line break is fine (data.gov.sg serves files that way): a cut-short last
    line shows as too few fields or an unreadable value, and a cut that leaves a plausible
    value is caught by ``make data``'s manifest (:func:`check_manifest`). ``check=False``
    leaves out the checks of single values, for a second reading whose fingerprint the caller
    compares with the first (:meth:`MonthDelivery.read_rows`).
    """
    name = path.name
    name_month = month_in_name(name)
    text = _decode(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[Row] = []
    try:
        header = next(reader, [])
        # A second reading (check=False) says nothing the first did not.
        index = check_header(name, header, log, warn=check)
        present = frozenset(index)
        checked_months: set[str] = set()
        last_line = reader.line_num
        for fields in reader:
            line, last_line = last_line + 1, reader.line_num
            if not fields:  # a blank line holds no row
                continue
            check_row(name, line, fields, header)
            values = tuple(fields[index[column]] if column in index else None for column in COLUMNS)
            if not check:
                rows.append(Row(line, values))
                continue
            for column, value in zip(COLUMNS, values, strict=True):
                if value is not None and (found := value_problem(column, value)):
                    problem, rule = found
                    raise DeliveryError(
                        name, line, problem, column=column, rule=rule, todo=REDOWNLOAD
                    )
            if name_month is not None and values[0] != name_month:
                raise DeliveryError(
                    name,
                    line,
                    f"a row of {values[0]} in a file named for {name_month}",
                    column="month",
                    rule="rows match the month in the file name",
                    todo="Rename the file so its name holds no month, or split it by month.",
                )
            if values[0] not in checked_months:
                check_resource(name, line, values[0], present)
                checked_months.add(values[0])
            rows.append(Row(line, values))
    except csv.Error as error:
        raise DeliveryError(
            name,
            reader.line_num,
            f"not readable as CSV: {error}",
            rule="a delivery is well-formed CSV",
            todo=REDOWNLOAD,
        ) from None
    if not rows:
        raise DeliveryError(
            name,
            2,
            "the file has a header but no data rows",
            rule="a delivery holds at least one row",
            todo=REDOWNLOAD,
        )
    return rows


def is_delivery_name(name: str) -> bool:
    """Whether a file name is a delivery's: ``*.csv`` (any case) or ``*.csv.gz``."""
    return name.lower().endswith(DELIVERY_SUFFIXES)


@dataclass(frozen=True)
class FolderScan:
    """The deliveries of a folder, and what else it holds (each entry named once)."""

    deliveries: list[Path]
    ignored: list[str]


def scan_folder(data_dir: Path) -> FolderScan:
    """Sort every entry of ``data_dir``: deliveries, companions (a manifest, a README), and
    the rest, which is named; an entry named like a delivery that cannot be read is refused."""
    if not data_dir.is_dir():
        raise DeliveryError(
            str(data_dir),
            None,
            "is not a folder",
            rule="data_dir is the folder holding the CSV deliveries",
            todo="Set data_dir to that folder, or unset it to read the bundled snapshot.",
        )
    deliveries: list[Path] = []
    ignored: list[str] = []
    for entry in sorted(data_dir.iterdir(), key=lambda path: path.name):
        name = entry.name
        if COMPANION_RE.match(name):
            continue
        looks_like_delivery = is_delivery_name(name) or DELIVERY_NAME_RE.match(name)
        if entry.is_symlink() and not entry.exists():
            problem = "is a link to a file that does not exist"
        elif entry.is_dir():
            problem = "is a folder: deliveries in subfolders are not read"
        elif not is_delivery_name(name):
            problem = "is not a CSV delivery (*.csv or *.csv.gz)"
            if looks_like_delivery:
                problem += (
                    ", though its name says it is one: export it from data.gov.sg as CSV, or "
                    "move it out of the folder"
                )
        else:
            try:
                with entry.open("rb"):
                    pass
            except OSError as error:
                problem = f"cannot be read: {error.strerror or error}"
            else:
                deliveries.append(entry)
                continue
        if looks_like_delivery:
            raise DeliveryError(
                name,
                None,
                problem,
                rule="every delivery in the folder can be read",
                todo="Fix the file (or its link or permissions), or move it out of the folder.",
            )
        ignored.append(f"{name} {problem}")
    return FolderScan(deliveries, ignored)


def find_deliveries(data_dir: Path) -> list[Path]:
    """The deliveries directly in ``data_dir`` (``*.csv`` in any case, ``*.csv.gz``), by name."""
    return scan_folder(data_dir).deliveries


def wait_until_settled(
    path: Path,
    log: logging.Logger = logger,
    *,
    quiet_seconds: float = SETTLE_SECONDS,
    timeout: float = SETTLE_TIMEOUT_SECONDS,
    clock=time.time,
    sleep=time.sleep,
) -> None:
    """Return once ``path`` has not changed for ``quiet_seconds``; refuse a file still being
    written after ``timeout`` (a copy or export in progress must not load as a whole month)."""
    started = clock()
    stat = path.stat()
    seen = (stat.st_size, stat.st_mtime_ns)
    if clock() - stat.st_mtime >= quiet_seconds:
        return
    log.info(
        "%s was modified %.1f s ago: waiting until it stops changing",
        path.name,
        max(0.0, clock() - stat.st_mtime),
    )
    quiet_since = clock()
    while clock() - quiet_since < quiet_seconds:
        if clock() - started > timeout:
            raise DeliveryError(
                path.name,
                None,
                f"is still being written: it kept changing for {timeout:.0f} s",
                rule="a delivery is complete before it is loaded",
                todo="Wait until the copy or download has finished, then run again.",
            )
        sleep(min(0.25, quiet_seconds))
        stat = path.stat()
        now = (stat.st_size, stat.st_mtime_ns)
        if now != seen:
            seen, quiet_since = now, clock()


def read_manifest(data_dir: Path) -> dict[str, dict]:
    """``make data``'s record of each file it wrote (rows and SHA-256), by file name."""
    path = data_dir / "manifest.json"
    if not path.is_file():
        return {}
    try:
        months = json.loads(path.read_text(encoding="utf-8")).get("months") or {}
    except (OSError, ValueError, AttributeError) as error:
        logger.warning(
            "%s is not readable JSON (%s): the files are not compared with it", path, error
        )
        return {}
    return {
        entry["file"]: entry
        for entry in months.values()
        if isinstance(entry, dict) and entry.get("file")
    }


def content_sha256(path: Path) -> str:
    """SHA-256 of a delivery's bytes (decompressed for ``.gz``), as ``make data`` records it."""
    data = path.read_bytes()
    if path.name.lower().endswith(".gz"):
        data = gzip.decompress(data)
    return hashlib.sha256(data).hexdigest()


def check_manifest(path: Path, rows: int, entry: dict | None, log: logging.Logger = logger) -> None:
    """Compare a delivery with its manifest entry: fewer rows than were downloaded means the
    file was cut short (refused); other changes are named in a warning."""
    if not entry:
        return
    expected = entry.get("rows")
    changed = bool(entry.get("sha256")) and content_sha256(path) != entry["sha256"]
    # make data ends every file with a line break: a changed file without one was cut.
    cut = changed and not _decode(path).endswith(("\n", "\r"))
    if isinstance(expected, int) and (rows < expected or cut):
        raise DeliveryError(
            path.name,
            None,
            f"holds {rows:,} rows"
            + (" and ends inside a line" if cut else "")
            + f", but manifest.json records {expected:,} complete rows for it: the file was "
            "cut short, or is still being copied",
            rule="a delivery holds the rows its manifest records",
            todo="Download it again with `make data` (or finish copying it), then run again.",
        )
    if changed:
        log.warning(
            "%s differs from the file manifest.json records (%s rows when downloaded, %s now), "
            "so it was changed after `make data` wrote it; it is loaded as it is now (rule: a "
            "delivery matches its manifest)",
            path.name,
            f"{expected:,}" if isinstance(expected, int) else "?",
            f"{rows:,}",
        )
