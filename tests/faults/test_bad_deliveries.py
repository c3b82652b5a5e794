"""Bad deliveries through the real pipeline (Meltano, the validation gate, dbt).

Every case starts from a clone of the baseline (2023-01 and 2023-02 loaded and built) and
delivers 2023-03 (or a copy of an earlier month) with one defect. For every case: the run
stops or quarantines with a message naming the file, the line or column, and the rule; raw
keeps what was delivered, or nothing when the delivery is refused; the marts change only as
the outcome allows (not at all when the run stops); Meltano's state claims only what landed;
and then the clean 2023-03 delivery goes through and the marts equal the reference run's.

Set ``HDB_FAULTS_MESSAGES=<file>`` to collect every case's message (JSON lines).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from faults.support import (
    LOAD_COLUMNS,
    Outcome,
    Pipeline,
    accepted_counts,
    delivered_values,
    delivery_name,
    fact_checksums_by_month,
    latest_counts,
    load_rows,
    mart_checksums,
    meltano_state,
    raw_snapshot,
    read_csv,
    rejected,
    set_column,
    state_matches_raw,
    write_csv,
)
from hdb_elt.validation import withdraw_rejection

pytestmark = pytest.mark.slow

MARCH = delivery_name("2023-03")

# What a case's run must end with.
REFUSED = "refused by extract-load: nothing lands"
BLOCKED = "landed in raw, stopped by the validation gate"
QUARANTINED = "loaded; the implausible rows quarantined"
LOADED = "loaded"
SKIPPED = "nothing new to load"


@dataclass(frozen=True)
class Case:
    """One bad delivery: how to make it (returns the files it wrote), the outcome, the words
    its message must hold, and what the marts must then equal."""

    name: str
    make: Callable[[Path, Path], list[Path]]
    outcome: str
    words: tuple[str, ...]
    quarantined: frozenset[tuple[int, str]] = frozenset()
    # Marts equal to the reference run's, ignoring these columns (None: not compared).
    same_as_reference: tuple[str, ...] | None = None
    dbt_tests: bool = False


def march(shared: Path) -> tuple[list[str], list[list[str]]]:
    return read_csv(shared / MARCH)


def text_of(shared: Path, name: str = MARCH) -> str:
    return (shared / name).read_text(encoding="utf-8")


def write_text(folder: Path, name: str, text: str | bytes) -> list[Path]:
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return [path]


def edited(*changes: tuple[str, str, list[int]]):
    """A maker: the real 2023-03 delivery with each ``(column, value, lines)`` applied."""

    def make(folder: Path, shared: Path) -> list[Path]:
        header, rows = march(shared)
        for column, value, lines in changes:
            rows = set_column(rows, header, column, value, lines)
        return [write_csv(folder / MARCH, header, rows)]

    return make


def empty(folder: Path, shared: Path) -> list[Path]:
    return write_text(folder, MARCH, b"")


def header_only(folder: Path, shared: Path) -> list[Path]:
    return write_text(folder, MARCH, text_of(shared).splitlines(keepends=True)[0])


def cut_mid_row(folder: Path, shared: Path) -> list[Path]:
    text = text_of(shared)
    last = text.splitlines(keepends=True)[-1]
    return write_text(folder, MARCH, text[: len(text) - len(last) // 2])


def cut_in_last_value(folder: Path, shared: Path) -> list[Path]:
    # "...,975000\n" becomes "...,97500": a plausible price and no line break, which is how
    # data.gov.sg serves complete files too. What shows the cut is the manifest `make data`
    # wrote beside the file when it downloaded it.
    text = text_of(shared)
    entry = {"file": MARCH, "rows": text.count("\n") - 1, "sha256": sha256(text.encode())}
    (folder / "manifest.json").write_text(json.dumps({"months": {"2023-03": entry}}))
    return write_text(folder, MARCH, text[:-2])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def without_price(folder: Path, shared: Path) -> list[Path]:
    header, rows = march(shared)
    keep = [i for i, column in enumerate(header) if column != "resale_price"]
    return [
        write_csv(folder / MARCH, [header[i] for i in keep], [[r[i] for i in keep] for r in rows])
    ]


def extra_column(folder: Path, shared: Path) -> list[Path]:
    header, rows = march(shared)
    return [write_csv(folder / MARCH, [*header, "remarks"], [[*row, "ok"] for row in rows])]


def reordered(folder: Path, shared: Path) -> list[Path]:
    header, rows = march(shared)
    order = list(reversed(range(len(header))))
    return [
        write_csv(folder / MARCH, [header[i] for i in order], [[r[i] for i in order] for r in rows])
    ]


def latin1(folder: Path, shared: Path) -> list[Path]:
    header, rows = march(shared)
    rows = set_column(rows, header, "street_name", "JALAN CAFÉ", [14])
    return [write_csv(folder / MARCH, header, rows, encoding="latin-1")]


def bom_crlf(folder: Path, shared: Path) -> list[Path]:
    text = text_of(shared).replace("\n", "\r\n")
    return write_text(folder, MARCH, "\ufeff" + text)


def outside_window(folder: Path, shared: Path) -> list[Path]:
    return write_text(folder, delivery_name("2023-07"), text_of(shared, delivery_name("2023-07")))


def mixed_months(folder: Path, shared: Path) -> list[Path]:
    # A full export of the dataset: 2023-03 (lines 2-2278) then 2023-07, in one file.
    march_text = text_of(shared)
    july = text_of(shared, delivery_name("2023-07")).split("\n", 1)[1]
    return write_text(folder, "resale-flat-prices-export.csv", march_text + july)


def misnamed(folder: Path, shared: Path) -> list[Path]:
    return write_text(folder, MARCH, text_of(shared, delivery_name("2023-02")))


def copied_again(folder: Path, shared: Path) -> list[Path]:
    shutil.copy(shared / delivery_name("2023-02"), folder / delivery_name("2023-02"))
    return []  # the same file as before: nothing to clean up


def second_copy(folder: Path, shared: Path) -> list[Path]:
    # What a browser saves when the same month is downloaded twice.
    return write_text(
        folder, "resale-flat-prices-2023-02 (1).csv", text_of(shared, delivery_name("2023-02"))
    )


def concatenated_with_itself(folder: Path, shared: Path) -> list[Path]:
    # A copy-paste accident: the whole file, then its rows once more.
    text = text_of(shared)
    return write_text(folder, MARCH, text + text.split("\n", 1)[1])


def two_percent_bad_prices(folder: Path, shared: Path) -> list[Path]:
    return edited(("resale_price", "1", BAD_PRICE_LINES))(folder, shared)


BAD_PRICE_LINES = [2 + 49 * i for i in range(46)]  # 46 of 2,277 rows: 2.0%

CASES = [
    Case(
        "empty file",
        empty,
        REFUSED,
        (f"{MARCH}, line 1: the file is empty: there is no header row",
         "(rule: a delivery starts with a header row naming the source columns)"),
    ),
    Case(
        "header only",
        header_only,
        REFUSED,
        (f"{MARCH}, line 2: the file has a header but no data rows",
         "(rule: a delivery holds at least one row)"),
    ),
    Case(
        "truncated last line",
        cut_mid_row,
        REFUSED,
        (f"{MARCH}, line 2278, column ", "it ends early",
         "(rule: every row has as many fields as the header)"),
    ),
    Case(
        "truncated inside the last value",
        cut_in_last_value,
        REFUSED,
        (f"{MARCH}: holds 2,277 rows and ends inside a line, but manifest.json records 2,277 "
         "complete rows for it: the file was cut short",
         "(rule: a delivery holds the rows its manifest records)"),
    ),
    Case(
        "missing column",
        without_price,
        REFUSED,
        (f"{MARCH}, line 1, column resale_price: missing from the header",
         "(rule: the header names the eleven columns"),
    ),
    Case(
        "extra column",
        extra_column,
        LOADED,
        (f"Warning: {MARCH}, line 1: column(s) 'remarks' are not among the eleven",
         "(rule: the header names the eleven columns; others are ignored)"),
        same_as_reference=LOAD_COLUMNS,
    ),
    Case(
        "columns reordered",
        reordered,
        LOADED,
        ("Extract-load: 2,277 rows in 1 month(s) (2023-03: 2,277)",),
        same_as_reference=LOAD_COLUMNS,
    ),
    Case(
        "not UTF-8",
        latin1,
        REFUSED,
        (f"{MARCH}, line 14: byte 0xc9 at byte offset", "is not valid UTF-8",
         "(rule: deliveries are UTF-8 text)"),
    ),
    Case(
        "BOM and CRLF",
        bom_crlf,
        LOADED,
        ("Extract-load: 2,277 rows in 1 month(s) (2023-03: 2,277)",),
        same_as_reference=LOAD_COLUMNS,
    ),
    Case(
        "non-numeric price",
        edited(("resale_price", "n/a", [14])),
        REFUSED,
        (f"{MARCH}, line 14, column resale_price: 'n/a' is not a number",
         "(rule: resale_price must be numeric)"),
    ),
    Case(
        "negative and zero area",
        edited(("floor_area_sqm", "-68", [14]), ("floor_area_sqm", "0", [15])),
        QUARANTINED,
        (f"{MARCH} line 14: floor_area_sqm '-68' is below 20 (rule floor_area_plausible, "
         "quarantine)",
         f"{MARCH} line 15: floor_area_sqm '0' is below 20 (rule floor_area_plausible, "
         "quarantine)",
         "2 quarantined"),
        quarantined=frozenset({(14, "floor_area_plausible"), (15, "floor_area_plausible")}),
    ),
    Case(
        "a NUL and a line break inside values",
        edited(("street_name", "ANG MO KIO\x00AVE 1", [14]), ("block", "308\nB", [15])),
        QUARANTINED,
        (f"{MARCH} line 14: street_name 'ANG MO KIO\\x00AVE 1' holds control character(s) "
         "U+0000 (rule no_control_characters, quarantine)",
         f"{MARCH} line 15: block '308\\nB' holds control character(s) U+000A",
         "2 quarantined"),
        quarantined=frozenset({(14, "no_control_characters"), (15, "no_control_characters")}),
    ),
    Case(
        "a file concatenated with itself",
        concatenated_with_itself,
        LOADED,
        (f"{MARCH} line 2279: month 2023-03: 100.0% of the delivery's rows have an identical "
         "twin, more than 50% (a file concatenated with itself?)",
         "(rule identical_rows_share, warning)", "1 warning(s), passed"),
        dbt_tests=True,
    ),
    Case(
        "month 2023-13",
        edited(("month", "2023-13", [14])),
        REFUSED,
        (f"{MARCH}, line 14, column month: '2023-13' is not a month",
         "(rule: month must be YYYY-MM)"),
    ),
    Case(
        "a month outside the window",
        outside_window,
        SKIPPED,
        ("Note: Skipped 1 files named for months outside the window 2023-01..2023-03, "
         "unread: resale-flat-prices-2023-07.csv",),
    ),
    Case(
        "rows of months inside and outside the window in one file",
        mixed_months,
        LOADED,
        ("Note: resale-flat-prices-export.csv: skipped 2053 rows of months outside the "
         "window (2023-07: 2053)",),
        same_as_reference=(*LOAD_COLUMNS, "_source"),
    ),
    Case(
        "rows all of another month than the file's name",
        misnamed,
        REFUSED,
        (f"{MARCH}, line 2, column month: a row of 2023-02 in a file named for 2023-03",
         "(rule: rows match the month in the file name)"),
    ),
    Case(
        "the same file delivered again",
        copied_again,
        SKIPPED,
        ("Extract-load: nothing new loaded.", "Warning: No delivery for 2023-03 in ",
         "(rule: every month of the window has a delivery)"),
    ),
    Case(
        "a second copy of a delivered month",
        second_copy,
        SKIPPED,
        ("Warning: resale-flat-prices-2023-02.csv, line 2: delivers 2023-02 with exactly the "
         "rows of resale-flat-prices-2023-02 (1).csv (1837 rows), so the month is loaded once",
         "(rule: each month comes from exactly one file in a run)"),
    ),
    Case(
        # one list of towns: the region seed, which the gate reads (a new town warns in both)
        "an unknown town missing from the region seed",
        edited(("town", "ATLANTIS", [14, 15, 16])),
        LOADED,
        (f"{MARCH} line 14: town 'ATLANTIS' is not a known HDB town",
         "(rule town_known, warning)", "1 warning(s), passed"),
        dbt_tests=True,
    ),
    Case(
        "2% of rows with impossible prices",
        two_percent_bad_prices,
        BLOCKED,
        ("month 2023-03: 46 of 2,277 rows (2.0%) failed row-level rules (first: "
         f"{MARCH} line 2: resale_price '1' is below 50,000, rule resale_price_plausible; ",
         "more than max_quarantine_fraction 1.0% (rule quarantine_threshold, blocking)"),
        quarantined=frozenset((line, "resale_price_plausible") for line in BAD_PRICE_LINES),
    ),
]  # fmt: skip


def record(case: str, outcome: Outcome) -> None:
    """Append the observed message to $HDB_FAULTS_MESSAGES, for the suite's report."""
    target = os.environ.get("HDB_FAULTS_MESSAGES")
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            item = {"case": case, "stage": outcome.stage, "message": outcome.message}
            handle.write(json.dumps(item) + "\n")


def quarantined(warehouse: Path, load_id: str) -> set[tuple[int, str]]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return set(
            con.execute(
                "select _source_row, rule from audit.quarantine where _load_id = ?", [load_id]
            ).fetchall()
        )


def fact_rows(warehouse: Path, month: str) -> int:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(
            "select count(*) from marts.fct_resale_transactions where month_key = ?", [month]
        ).fetchone()[0]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_bad_delivery_is_named_and_the_next_good_one_goes_through(
    case: Case, pipeline: Pipeline, reference, shared_monthly: Path
) -> None:
    warehouse = pipeline.warehouse
    raw_before, state_before = raw_snapshot(warehouse), meltano_state(pipeline)
    marts_before = mart_checksums(warehouse)
    fact_before = fact_checksums_by_month(warehouse)

    written = case.make(pipeline.deliveries, shared_monthly)
    outcome = pipeline.run(dbt_tests=case.dbt_tests)
    record(case.name, outcome)
    for words in case.words:
        assert words in outcome.message, outcome.message

    if case.outcome in (REFUSED, SKIPPED):
        assert outcome.stage == ("extract-load" if case.outcome == REFUSED else None)
        assert raw_snapshot(warehouse) == raw_before  # nothing landed
        assert meltano_state(pipeline) == state_before
        assert mart_checksums(warehouse) == marts_before  # byte for byte
    else:
        # Raw keeps the delivery exactly as delivered (by column name, whatever the format).
        assert outcome.extract is not None and outcome.extract.load_id is not None
        delivered = [
            values
            for path in written
            for values in delivered_values(path)
            if values[0] == "2023-03"
        ]
        assert load_rows(warehouse, outcome.extract.load_id) == delivered
        expected_quarantine = case.quarantined
        assert quarantined(warehouse, outcome.extract.load_id) == (
            set() if case.outcome == BLOCKED else expected_quarantine
        )
        if case.outcome == BLOCKED:
            assert outcome.stage == "validate"
            assert mart_checksums(warehouse) == marts_before  # dbt never ran
        else:
            assert outcome.stage is None, outcome.message
            # The months not delivered again are untouched, byte for byte.
            fact_after = fact_checksums_by_month(warehouse)
            assert {m: fact_after[m] for m in fact_before} == fact_before
            assert fact_rows(warehouse, "2023-03") == len(delivered) - len(expected_quarantine)
            if case.same_as_reference is not None:
                assert mart_checksums(warehouse, ignore=case.same_as_reference) == (
                    mart_checksums(reference.pipeline.warehouse, ignore=case.same_as_reference)
                )
    state_matches_raw(pipeline)  # the state claims exactly what landed

    if case.outcome == BLOCKED:
        # The blocked delivery is rejected: never again its month's latest, so a higher
        # threshold alone does not bring it back ...
        assert rejected(warehouse) == [(outcome.extract.load_id, "2023-03", "quarantine_threshold")]
        assert "2023-03" not in accepted_counts(warehouse)
        # ... the gate's remedy for rows judged acceptable: take the rejection back, and a
        # higher threshold lets the month through with the implausible rows quarantined.
        assert withdraw_rejection(warehouse, outcome.extract.load_id, "2023-03") == 1
        lenient = pipeline.run(max_quarantine_fraction=0.05)
        assert lenient.stage is None, lenient.message
        assert quarantined(warehouse, outcome.extract.load_id) == case.quarantined
        assert fact_rows(warehouse, "2023-03") == 2277 - len(case.quarantined)

    # The fix: the delivery replaced by the clean file. It goes through, and the marts are
    # the reference run's. Where the failed run left raw, state and marts byte-identical to
    # the baseline (asserted above), the good run starts exactly where the reference run
    # started, so it runs extract-load and the gate only: the build would repeat the
    # reference's, on the same input. Where the good file holds what is already loaded, the
    # build is skipped too (nothing new reached raw).
    for path in written:
        path.unlink()
    shutil.copy(shared_monthly / MARCH, pipeline.deliveries / MARCH)
    fixed = pipeline.run(build=False)
    assert fixed.stage is None, fixed.message
    assert latest_counts(warehouse) == reference.counts
    if case.outcome not in (REFUSED, SKIPPED):
        if fixed.extract.load_id is not None:  # else the marts' input did not change
            assert not pipeline.transform()
        ignore = case.same_as_reference or LOAD_COLUMNS
        assert mart_checksums(warehouse, ignore=ignore) == mart_checksums(
            reference.pipeline.warehouse, ignore=ignore
        )
    state_matches_raw(pipeline)
