"""Rejected deliveries and ids through the real pipeline (Meltano, the validation gate, dbt).

A delivery the gate blocks is recorded in audit.rejected_deliveries and is never again its
month's latest: the view raw.latest_deliveries, which the gate, staging and the checks read,
leaves it out. So a corrected file goes through, a removed file takes the month back to its
previous accepted delivery, and a month left with nothing accepted says so, naming the
rejected load, its file, the rule and the time. And a re-delivery that writes the same
numbers differently (44.0 for 44, 288000.00 for 288000) keeps every transaction id.

Every case starts from a clone of the suite's baseline (2023-01 and 2023-02 loaded and built,
window 2023-01..2023-03).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import duckdb
import pytest

from faults.support import (
    LOAD_COLUMNS,
    Pipeline,
    accepted_counts,
    delivery_name,
    fact_checksums_by_month,
    mart_checksums,
    read_csv,
    rejected,
    set_column,
    write_csv,
)
from hdb_elt.validation import RejectedDeliveriesWarning

pytestmark = pytest.mark.slow

MARCH, FEBRUARY = delivery_name("2023-03"), delivery_name("2023-02")
# 46 of March's 2,277 rows (2.0%) with an impossible price: over the 1% quarantine threshold.
BAD_PRICE_LINES = [2 + 49 * i for i in range(46)]


def with_bad_prices(source: Path, dest: Path) -> Path:
    header, rows = read_csv(source)
    lines = [line for line in BAD_PRICE_LINES if line <= len(rows) + 1]
    return write_csv(dest, header, set_column(rows, header, "resale_price", "1", lines))


def fact_ids(warehouse: Path, month: str) -> list[str]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return [
            row[0]
            for row in con.execute(
                "select transaction_id from marts.fct_resale_transactions where month_key = ? "
                "order by _source_row",
                [month],
            ).fetchall()
        ]


def fact_loads(warehouse: Path) -> dict[str, list[str]]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute(
            "select month_key, list(distinct _load_id) from marts.fct_resale_transactions "
            "group by 1 order by 1"
        ).fetchall()
    return dict(rows)


def test_a_rejected_delivery_is_recorded_and_a_corrected_file_goes_through(
    pipeline: Pipeline, reference, shared_monthly: Path
) -> None:
    with_bad_prices(shared_monthly / MARCH, pipeline.deliveries / MARCH)
    blocked = pipeline.run()
    assert blocked.stage == "validate", blocked.message
    assert "audit.rejected_deliveries" in blocked.message
    bad_load = blocked.extract.load_id
    assert rejected(pipeline.warehouse) == [(bad_load, "2023-03", "quarantine_threshold")]
    assert "2023-03" not in accepted_counts(pipeline.warehouse)

    # Run again, the bad file still there: the gate does not read the rejected delivery as
    # March's latest, so it does not block the window again on it, and says March has none.
    with pytest.warns(RejectedDeliveriesWarning, match=f"2023-03: load {bad_load} "):
        again = pipeline.run(build=False)
    assert again.stage is None, again.message
    assert bad_load not in again.report.load_ids

    # The corrected file: loaded as a new delivery, validated, built; the marts are the
    # reference run's (which loaded the clean file straight away).
    shutil.copy(shared_monthly / MARCH, pipeline.deliveries / MARCH)
    fixed = pipeline.run(dbt_tests=True)
    assert fixed.stage is None, fixed.message
    assert fixed.extract.load_id not in (None, bad_load)
    assert accepted_counts(pipeline.warehouse) == {
        "2023-01": 2552,
        "2023-02": 1837,
        "2023-03": 2277,
    }
    assert fact_loads(pipeline.warehouse)["2023-03"] == [fixed.extract.load_id]
    assert mart_checksums(pipeline.warehouse, ignore=LOAD_COLUMNS) == mart_checksums(
        reference.pipeline.warehouse, ignore=LOAD_COLUMNS
    )
    assert rejected(pipeline.warehouse) == [(bad_load, "2023-03", "quarantine_threshold")]


def test_a_rejected_redelivery_removed_takes_the_month_back_to_its_accepted_delivery(
    pipeline: Pipeline, baseline: Pipeline
) -> None:
    facts_before = fact_checksums_by_month(pipeline.warehouse)
    february_load = fact_loads(pipeline.warehouse)["2023-02"]
    # February delivered again, with 2% impossible prices: blocked, rejected.
    original = pipeline.root / "february-original.csv"
    shutil.move(pipeline.deliveries / FEBRUARY, original)
    with_bad_prices(original, pipeline.deliveries / FEBRUARY)
    blocked = pipeline.run()
    assert blocked.stage == "validate", blocked.message
    assert rejected(pipeline.warehouse) == [
        (blocked.extract.load_id, "2023-02", "quarantine_threshold")
    ]
    # February reads as its first, accepted delivery again; the marts never changed.
    assert accepted_counts(pipeline.warehouse)["2023-02"] == 1837
    assert fact_checksums_by_month(pipeline.warehouse) == facts_before

    # The user removes the bad file, as the gate advised: the run goes through on the
    # accepted February, and the marts are what they were, byte for byte.
    (pipeline.deliveries / FEBRUARY).unlink()
    after = pipeline.run(dbt_tests=True)
    assert after.stage is None, after.message
    assert fact_loads(pipeline.warehouse)["2023-02"] == february_load
    assert fact_checksums_by_month(pipeline.warehouse) == facts_before


def test_a_month_whose_only_delivery_was_rejected_and_removed_says_so(
    pipeline: Pipeline, shared_monthly: Path
) -> None:
    with_bad_prices(shared_monthly / MARCH, pipeline.deliveries / MARCH)
    blocked = pipeline.run()
    assert blocked.stage == "validate", blocked.message
    (pipeline.deliveries / MARCH).unlink()

    march = pipeline.run("2023-03", "2023-03")

    assert march.stage == "validate"
    message = march.message
    assert "Nothing to validate for 2023-03..2023-03" in message
    assert (
        f"2023-03: load {blocked.extract.load_id} (file {MARCH}, no longer there), rejected "
    ) in message
    assert re.search(
        r"rejected \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC by rule quarantine_threshold", message
    )
    assert "46 of 2,277 rows (2.0%) failed row-level rules" in message
    assert "Deliver a corrected file" in message


def test_numbers_written_as_floats_keep_every_transaction_id(
    reference, case_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """March delivered again as a spreadsheet exports it: 44 as 44.0, 288000 as 288000.00."""
    pipeline = reference.pipeline.clone(case_root).activate(monkeypatch)
    ids_before = fact_ids(pipeline.warehouse, "2023-03")
    header, rows = read_csv(pipeline.deliveries / MARCH)
    area, price = header.index("floor_area_sqm"), header.index("resale_price")
    for row in rows:
        row[area] = f"{float(row[area]):.1f}"
        row[price] = f"{float(row[price]):.2f}"
    write_csv(pipeline.deliveries / MARCH, header, rows)

    redelivered = pipeline.run(dbt_tests=True)

    assert redelivered.stage is None, redelivered.message
    assert fact_loads(pipeline.warehouse)["2023-03"] == [redelivered.extract.load_id]
    ids_after = fact_ids(pipeline.warehouse, "2023-03")
    assert ids_after == ids_before  # the same sales, the same ids, row for row
    assert len(set(ids_after)) == len(ids_after) == 2277  # identical twins stay distinct
    assert mart_checksums(pipeline.warehouse, ignore=LOAD_COLUMNS) == mart_checksums(
        reference.pipeline.warehouse, ignore=LOAD_COLUMNS
    )


def test_the_same_rejected_file_is_not_loaded_again_and_says_why(
    pipeline: Pipeline, shared_monthly: Path
) -> None:
    """Run again with the blocked file still in place: the tap knows its content from the
    warehouse's record of rejections, loads nothing, and names the rejection; with nothing
    accepted for the month, the gate warns so (naming the file still in the folder) rather
    than judging the same rows again, and validates the other months."""
    with_bad_prices(shared_monthly / MARCH, pipeline.deliveries / MARCH)
    blocked = pipeline.run()
    assert blocked.stage == "validate", blocked.message
    with duckdb.connect(str(pipeline.warehouse), read_only=True) as con:
        (raw_rows,) = con.execute("select count(*) from raw.resale_flat_prices").fetchone()

    with pytest.warns(RejectedDeliveriesWarning, match="still in the deliveries folder"):
        again = pipeline.run()
    assert again.extract.load_id is None, again.message
    assert (
        f"{MARCH}: the delivery of 2023-03 in {pipeline.deliveries} is the one the validation "
        "gate rejected on "
    ) in again.message
    assert "(rule quarantine_threshold), so it is not loaded again" in again.message
    with duckdb.connect(str(pipeline.warehouse), read_only=True) as con:
        assert con.execute("select count(*) from raw.resale_flat_prices").fetchone() == (raw_rows,)
    assert rejected(pipeline.warehouse) == [
        (blocked.extract.load_id, "2023-03", "quarantine_threshold")
    ]
