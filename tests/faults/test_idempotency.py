"""Running again changes nothing: the same window twice, a backfill re-run, a backfill of a
month loaded out of order. Mart contents are compared byte for byte (ordered checksums of
every column of every mart)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from faults.support import (
    LOAD_COLUMNS,
    Pipeline,
    delivery_name,
    mart_checksums,
    raw_snapshot,
    state_matches_raw,
)
from hdb_elt.transform import build_window

pytestmark = pytest.mark.slow


def test_the_same_window_run_twice_leaves_byte_identical_marts(reference, case_root: Path) -> None:
    with pytest.MonkeyPatch.context() as patch:
        pipeline = reference.pipeline.clone(case_root).activate(patch)
        raw_before, marts_before = (
            raw_snapshot(pipeline.warehouse),
            mart_checksums(pipeline.warehouse),
        )
        again = pipeline.run()
        assert again.stage is None, again.message
        assert again.extract.load_id is None  # unchanged files are not extracted again
        assert raw_snapshot(pipeline.warehouse) == raw_before
        assert mart_checksums(pipeline.warehouse) == marts_before

        # A backfill of one month re-run (as a partitioned orchestrator would), then dbt's
        # own default (every month with a newer delivery: none).
        backfill = pipeline.run("2023-01", "2023-01")
        assert backfill.stage is None, backfill.message
        assert mart_checksums(pipeline.warehouse) == marts_before
        assert build_window(pipeline.settings(), capture=True).returncode == 0
        assert mart_checksums(pipeline.warehouse) == marts_before
        state_matches_raw(pipeline)


def test_a_month_backfilled_out_of_order_equals_a_clean_run_and_its_re_run_changes_nothing(
    reference, shared_monthly: Path, case_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = Pipeline(case_root)
    pipeline.deliveries.mkdir(parents=True)
    pipeline.activate(monkeypatch)
    for month in ("2023-02", "2023-03"):
        shutil.copy(shared_monthly / delivery_name(month), pipeline.deliveries)
    assert pipeline.run("2023-02", "2023-03").stage is None

    # January arrives later and is backfilled on its own.
    shutil.copy(shared_monthly / delivery_name("2023-01"), pipeline.deliveries)
    assert pipeline.run("2023-01", "2023-01").stage is None
    assert mart_checksums(pipeline.warehouse, ignore=LOAD_COLUMNS) == reference.marts

    marts = mart_checksums(pipeline.warehouse)
    assert pipeline.run("2023-01", "2023-01").stage is None  # the backfill, re-run
    assert mart_checksums(pipeline.warehouse) == marts
    state_matches_raw(pipeline)
