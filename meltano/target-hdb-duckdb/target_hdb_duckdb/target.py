"""``target-hdb-duckdb``: a Singer target that loads a whole run into DuckDB or nothing.

Singer has no end-of-stream message, and when a tap fails Meltano simply closes the target's
input, which looks like a normal end. So this target commits only when the input ends with a
STATE message sent after the last RECORD: a tap sends its closing STATE once its sync has
finished. Input that stops after a RECORD is a broken run: nothing is written, no state is
emitted, and the target exits non-zero. A closing STATE is not proof enough on its own
(singer-sdk taps write their current state when they are terminated), so for every month it
received the target also checks that the closing state records exactly that many rows
(``bookmarks.<stream>.months.<month>.rows``, as tap-hdb-resale writes once a month is done).
State goes to stdout only after the commit, so Meltano never stores state for rows that did
not land.

Rows come as RECORD messages or as BATCH messages naming Parquet (or JSON Lines) files, which
DuckDB reads in bulk into the same transaction; for the rules above a BATCH counts as its
rows. Once the load has committed and the state is out, the batch files are removed; after a
failure they stay where they are, named in the error, for a look at what the tap sent.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from target_hdb_duckdb.loader import DuckDBLoader, LoaderError

LOGGER = logging.getLogger("target-hdb-duckdb")

ABOUT = {
    "name": "target-hdb-duckdb",
    "description": __doc__.strip().splitlines()[0],
    "capabilities": ["about", "batch"],
    "settings": [
        {"name": "database_path", "kind": "string", "description": "The DuckDB file to load."},
        {
            "name": "catalog",
            "kind": "string",
            "description": "The shared warehouse instead: DuckLake's PostgreSQL catalog (libpq).",
            "sensitive": True,
        },
        {
            "name": "data_path",
            "kind": "string",
            "description": "With catalog: the shared folder of the DuckLake's Parquet files.",
        },
        {"name": "default_target_schema", "kind": "string", "description": "Schema (raw)."},
        {"name": "batch_size_rows", "kind": "integer", "description": "Rows per insert."},
        {
            "name": "verify_month_counts",
            "kind": "boolean",
            "description": "Commit only if the closing STATE confirms each month's row count.",
        },
    ],
}


class IncompleteStreamError(RuntimeError):
    """The input ended without the tap's closing STATE message."""


def load(lines: Iterable[str], config: dict[str, Any], out: IO[str]) -> dict[str, int]:
    """Load Singer messages; commit and write the last STATE to ``out`` if the run completed."""
    database_path = config.get("database_path")
    catalog = config.get("catalog") or None
    if not database_path and not catalog:
        raise LoaderError("Setting database_path is required: the DuckDB file to load into.")
    loader = DuckDBLoader(
        None if catalog else database_path,
        schema=config.get("default_target_schema") or "raw",
        batch_rows=int(config.get("batch_size_rows") or 50_000),
        catalog=catalog,
        data_path=config.get("data_path") or None,
    )
    verify_months = bool(config.get("verify_month_counts", True))
    state: Any = None
    state_after_last_record = False
    records = 0  # RECORD and BATCH messages
    try:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LoaderError(f"Input line {number} is not JSON: {exc}") from None
            kind = message.get("type")
            if kind == "RECORD":
                loader.add(message["stream"], message["record"])
                records += 1
                state_after_last_record = False
            elif kind == "BATCH":
                rows = loader.add_batch(
                    message["stream"], message.get("encoding"), message["manifest"]
                )
                LOGGER.info(
                    "Inserted %d rows from the batch file(s) %s; committed with the run",
                    rows,
                    ", ".join(message["manifest"]),
                )
                records += 1
                state_after_last_record = False
            elif kind == "SCHEMA":
                loader.register(message["stream"], message["schema"])
            elif kind == "STATE":
                state = message.get("value")
                state_after_last_record = True
            # ACTIVATE_VERSION and other messages carry nothing this append-only target needs.
        if records and not state_after_last_record:
            raise IncompleteStreamError(
                f"The input stopped after {records} records or batches without the tap's "
                "closing STATE message: the extract did not finish, so nothing was loaded. See "
                "the tap's error above, fix it, and run again."
            )
        unconfirmed = loader.unconfirmed_months(state) if verify_months else []
        if unconfirmed:
            raise IncompleteStreamError(
                "The tap's closing STATE does not confirm the months it sent ("
                + "; ".join(unconfirmed[:5])
                + "): the extract did not finish, so nothing was loaded. See the tap's error "
                "above, fix it, and run again."
            )
        counts = loader.commit(state)
    except BaseException:
        loader.abort()
        if loader.batch_files:
            LOGGER.error(
                "Nothing was loaded. The batch files of this run are kept for a look at what "
                "the tap sent (delete them when done): %s",
                ", ".join(loader.batch_files),
            )
        raise
    if state is not None:
        out.write(json.dumps(state) + "\n")
        out.flush()
    for path in loader.batch_files:
        with contextlib.suppress(OSError):  # loaded and committed: the file has done its job
            Path(path).unlink()
    for stream, count in counts.items():
        LOGGER.info("Loaded %d rows into stream %s as load %s", count, stream, loader.load_id)
    if not counts:
        LOGGER.info("No records received: nothing loaded.")
    return counts


def main(argv: list[str] | None = None) -> int:
    """Command line: ``target-hdb-duckdb --config config.json [--input messages.jsonl]``."""
    parser = argparse.ArgumentParser(prog="target-hdb-duckdb", description=__doc__)
    parser.add_argument("--config", type=Path, help="JSON file with the settings")
    parser.add_argument("--input", type=Path, help="read messages from this file, not stdin")
    parser.add_argument("--about", action="store_true", help="print what this target is")
    parser.add_argument("--format", default="json", help="format for --about (json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.about:
        print(json.dumps(ABOUT, indent=2))
        return 0
    config = json.loads(args.config.read_text()) if args.config else {}
    try:
        if args.input:
            with args.input.open(encoding="utf-8") as handle:
                load(handle, config, sys.stdout)
        else:
            load(sys.stdin, config, sys.stdout)
    except (LoaderError, IncompleteStreamError) as exc:
        LOGGER.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
