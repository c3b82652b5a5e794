"""The whole history through every stage: the five resources since 1990 in one Dagster run.

The folder holds the five resources' sample files as data.gov.sg publishes them (one file per
resource, 1990-01..2022-12, in each resource's own format: data/history_sample/) and the
bundled 2023 snapshot's monthly files. One run over 1990-01..2023-12, as ``make run`` starts
it, must load every row with its resource, pass the gate, harmonise the drift in staging, pass
every dbt test, and draw the long run in the report.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import duckdb
import pytest
from dagster import DagsterInstance
from dagster_support import dagster_environment
from tap_hdb_resale.resources import resource_of

from classroom.runner import execute
from hdb_elt.report import report_dir
from hdb_elt.seeds import flat_model_spellings
from hdb_elt.settings import DATA_DIR, SNAPSHOT_DIR

pytestmark = pytest.mark.slow

SAMPLES = DATA_DIR / "history_sample"


def rows_by_resource(folder: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in sorted(folder.glob("*.csv")):
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for row in csv.DictReader(handle):
                dataset_id = resource_of(row["month"]).dataset_id
                counts[dataset_id] = counts.get(dataset_id, 0) + 1
    return counts


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("history")
    deliveries = root / "deliveries"
    deliveries.mkdir()
    for source in (SAMPLES, SNAPSHOT_DIR):
        for path in source.glob("*.csv"):
            shutil.copy(path, deliveries)
    with (
        dagster_environment(root, deliveries) as env,
        DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance,
    ):
        outcome = execute("1990-01", "2023-12", instance)
        yield outcome, deliveries, Path(env["HDB_WAREHOUSE_PATH"])


def query(warehouse: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_one_run_over_35_years_succeeds_with_every_check(history):
    outcome, _, _ = history
    assert outcome.success, outcome.failure
    assert outcome.checks and all(outcome.checks.values()), outcome.checks
    assert [step.status for step in outcome.steps] == ["success"] * 5


def test_every_row_is_loaded_with_its_resource(history):
    _, deliveries, warehouse = history
    expected = rows_by_resource(deliveries)
    assert len(expected) == 5
    loaded = dict(
        query(warehouse, "select _dataset_id, count(*) from raw.latest_deliveries group by 1")
    )
    assert loaded == expected
    fact = query(
        warehouse, "select dataset_id, count(*) from marts.fct_resale_transactions group by 1"
    )
    assert dict(fact) == expected


def test_staging_harmonises_the_drift(history):
    _, _, warehouse = history
    fact = "marts.fct_resale_transactions"
    types = {t for (t,) in query(warehouse, f"select distinct flat_type from {fact}")}
    assert "MULTI-GENERATION" in types and "MULTI GENERATION" not in types
    models = {m for (m,) in query(warehouse, f"select distinct flat_model from {fact}")}
    assert models <= set(flat_model_spellings().values())
    assert "New Generation" in models
    bases = dict(query(warehouse, f"select date_basis, min(month_key) from {fact} group by 1"))
    assert set(bases) == {"approval", "registration"}
    assert str(bases["approval"]).startswith("1990-01")
    assert str(bases["registration"]).startswith("2012-03")
    # Bands of three and of five storeys, split into lower and upper.
    widths = {
        w for (w,) in query(warehouse, f"select distinct storey_upper - storey_lower from {fact}")
    }
    assert widths == {2, 4}
    # The remaining lease is derived exactly where the resource had none (before 2015).
    derived = query(
        warehouse,
        f"select remaining_lease_derived, min(month_key), max(month_key), "
        f"count(*) filter (where remaining_lease_months is null) from {fact} group by 1 order by 1",
    )
    (kept, kept_first, _, kept_missing), (made, _, made_last, made_missing) = derived
    assert kept is False and made is True
    assert str(kept_first).startswith("2015-01") and str(made_last).startswith("2014-12")
    assert kept_missing == made_missing == 0


def test_the_report_shows_the_long_run(history):
    _, _, warehouse = history
    report = report_dir(warehouse)
    assert (report / "long_run_price_per_sqm.png").stat().st_size > 10_000
    summary = (report / "summary.md").read_text()
    assert "in 1990 to" in summary and "in 2023" in summary
    # Sales before March 2012 are dated by approval; the notice names all five resources.
    assert "were approved or registered in Jan 1990 \u2013 Dec 2023" in summary
    assert "approval date, 1990 - 1999" in summary and "from Jan-2017 onwards" in summary
