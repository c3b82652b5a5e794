"""The warehouse is the one record of what is loaded (issue: copies, backups, lost state).

Meltano's state lives outside the warehouse (its system database) and is keyed by an id the
warehouse carries, so a copy or a restored backup of the warehouse shares it, and a lost
system database forgets it. Each case here makes the two disagree, through the real pipeline
(Meltano, the gate, dbt), and checks that every month of the window ends loaded exactly once,
and that the run's summary says where the state and the warehouse disagreed.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest

from faults.support import (
    LOAD_COLUMNS,
    Pipeline,
    delivery_name,
    latest_counts,
    mart_checksums,
    raw_snapshot,
    read_csv,
    set_column,
    write_csv,
)
from hdb_elt.extract_load import run_extract_load

pytestmark = pytest.mark.slow

MARCH = delivery_name("2023-03")


def deliveries_per_month(warehouse: Path) -> dict[str, int]:
    """How many deliveries (loads) of each month raw holds."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return dict(
            con.execute(
                "select month, count(distinct _load_id) from raw.resale_flat_prices "
                "group by all order by 1"
            ).fetchall()
        )


def test_a_restored_backup_gets_its_month_back(
    pipeline: Pipeline, reference, shared_monthly: Path, tmp_path: Path
) -> None:
    backup = tmp_path / "backup.duckdb"
    shutil.copy(pipeline.warehouse, backup)  # January and February
    shutil.copy(shared_monthly / MARCH, pipeline.deliveries)
    assert pipeline.run(build=False).extract.load_id is not None  # March loaded
    shutil.copy(backup, pipeline.warehouse)  # ... and the backup restored over it

    restored = pipeline.run()
    assert restored.stage is None, restored.message
    assert restored.extract.month_rows == {"2023-03": 2277}
    assert (
        "Warning: Meltano's state records 2023-03 as loaded, but the warehouse holds no "
        "accepted delivery of it (a copied or restored warehouse?)"
    ) in restored.message
    assert latest_counts(pipeline.warehouse) == reference.counts
    assert deliveries_per_month(pipeline.warehouse) == {"2023-01": 1, "2023-02": 1, "2023-03": 1}
    assert mart_checksums(pipeline.warehouse, ignore=LOAD_COLUMNS) == reference.marts

    again = pipeline.run(build=False)  # and from now on, nothing is loaded twice
    assert again.extract.load_id is None
    assert "every month in the window is up to date" in again.message
    assert "disagree" not in again.message and "Meltano's state" not in again.message


def test_a_copied_warehouse_does_not_share_its_originals_memory(
    pipeline: Pipeline, shared_monthly: Path, case_root: Path
) -> None:
    # A copy made to try something: the same id inside, the same Meltano database.
    copy = case_root / "copy.duckdb"
    shutil.copy(pipeline.warehouse, copy)
    shutil.copy(shared_monthly / MARCH, pipeline.deliveries)
    assert pipeline.run(build=False).extract.month_rows == {"2023-03": 2277}  # the original

    on_copy = run_extract_load(replace(pipeline.settings(), warehouse_path=copy))
    assert on_copy.month_rows == {"2023-03": 2277}
    assert "a copied or restored warehouse?" in on_copy.summary()
    assert deliveries_per_month(copy) == deliveries_per_month(pipeline.warehouse)


def test_a_lost_meltano_database_loads_nothing_twice(pipeline: Pipeline) -> None:
    raw_before = raw_snapshot(pipeline.warehouse)
    pipeline.meltano_db.unlink()
    run = pipeline.run(build=False)
    assert run.stage is None, run.message
    assert run.extract.load_id is None
    assert (
        "Warning: The warehouse holds 2023-01..2023-02, which Meltano's state does not record "
        "(a lost or shared Meltano database?)"
    ) in run.message
    assert raw_snapshot(pipeline.warehouse) == raw_before


def test_a_rolled_back_file_is_loaded_again(pipeline: Pipeline, shared_monthly: Path) -> None:
    header, rows = read_csv(shared_monthly / MARCH)
    revised = set_column(rows, header, "resale_price", "500000", [2])
    write_csv(pipeline.deliveries / MARCH, header, revised)
    first = pipeline.run(build=False)
    assert first.extract.month_rows == {"2023-03": 2277}
    shutil.copy(shared_monthly / MARCH, pipeline.deliveries / MARCH)  # rolled back
    rolled = pipeline.run(build=False)
    assert rolled.extract.month_rows == {"2023-03": 2277}
    with duckdb.connect(str(pipeline.warehouse), read_only=True) as con:
        (price,) = con.execute(
            "select resale_price from raw.resale_flat_prices where month = '2023-03' "
            "and _source_row = 2 and _load_id = ?",
            [rolled.extract.load_id],
        ).fetchone()
    assert price == rows[0][header.index("resale_price")]
    assert pipeline.run(build=False).extract.load_id is None


def test_a_warehouse_from_before_the_record_loads_nothing_twice(pipeline: Pipeline) -> None:
    # A warehouse written before raw._load_months existed: its loads are recorded from raw.
    with duckdb.connect(str(pipeline.warehouse)) as con:
        con.execute("drop table raw._load_months")
    raw_before = raw_snapshot(pipeline.warehouse)
    run = pipeline.run(build=False)
    assert run.extract.load_id is None, run.message
    assert raw_snapshot(pipeline.warehouse) == raw_before
