"""The five data.gov.sg resources since 1990 through dbt: staging harmonises their drift, and a
fact built before the harmonisation keeps working.

The raw rows of data/history_sample/ (1990-01..2022-12, each resource in its own format) and
the bundled 2023 deliveries are inserted into a scratch warehouse as the loader keeps them: every
value as delivered, a column the resource lacks NULL.
"""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from dbt_support import (
    SHARED_TOTAL_ROWS,
    copy_warehouse,
    dbt,
    load_deliveries,
    shared_month_files,
    statuses,
    table_checksum,
)
from tap_hdb_resale.resources import RESOURCES, resource_of

from hdb_elt.harmonisation import drift_by_resource
from hdb_elt.seeds import flat_model_spellings
from hdb_elt.settings import DATA_DIR
from hdb_elt.warehouse import RAW_TABLE, SOURCE_COLUMNS, connect, ensure_warehouse

HISTORY = DATA_DIR / "history_sample"


def insert_raw(warehouse: Path, files: list[Path]) -> int:
    """The files' rows into raw as one load, values as delivered; returns the rows inserted."""
    frames = []
    for path in files:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = pd.DataFrame(list(csv.DictReader(handle)), dtype="string")
        rows = rows.reindex(columns=list(SOURCE_COLUMNS))  # remaining_lease before 2015: NULL
        rows["_source"] = str(path)
        rows["_source_row"] = range(2, len(rows) + 2)
        frames.append(rows)
    rows = pd.concat(frames, ignore_index=True)
    rows["_load_id"] = "history"
    rows["_loaded_at"] = datetime(2024, 1, 1)
    ensure_warehouse(warehouse)
    with connect(warehouse) as con:
        con.register("delivered", rows)
        con.execute(f"insert into {RAW_TABLE} by name select * from delivered")
    return len(rows)


@pytest.fixture(scope="module")
def history_build(tmp_path_factory) -> dict:
    """A warehouse of the five fixture files plus the 2023 deliveries, built once."""
    root = tmp_path_factory.mktemp("history")
    warehouse = root / "warehouse.duckdb"
    files = sorted(HISTORY.glob("*.csv"))
    assert len(files) == len(RESOURCES)
    delivered = insert_raw(warehouse, [*files, *shared_month_files()])
    code, output, results = dbt(["build"], warehouse, root / "target")
    with connect(warehouse, read_only=True) as con:
        fact = con.execute("select * from marts.fct_resale_transactions").df()
        raw_models = con.execute(f"select distinct flat_model from {RAW_TABLE}").df()
    return {
        "warehouse": warehouse,
        "code": code,
        "output": output,
        "results": results,
        "delivered": delivered,
        "fact": fact,
        "raw_models": set(raw_models["flat_model"]),
    }


@pytest.mark.slow
def test_every_row_of_every_resource_reaches_the_fact_and_every_test_passes(history_build):
    assert history_build["code"] == 0, history_build["output"][-3000:]
    assert set(statuses(history_build["results"]).values()) <= {"success", "pass"}
    fact = history_build["fact"]
    assert len(fact) == history_build["delivered"]
    assert fact["month_key"].min() == "1990-01"
    assert fact["transaction_id"].is_unique


@pytest.mark.slow
def test_each_row_knows_its_resource_and_date_basis(history_build):
    fact = history_build["fact"]
    expected = fact["month_key"].map(lambda m: resource_of(m).dataset_id)
    assert (fact["dataset_id"] == expected).all()
    assert set(fact["dataset_id"]) == {r.dataset_id for r in RESOURCES}
    basis = fact["month_key"].map(lambda m: resource_of(m).date_basis)
    assert (fact["date_basis"] == basis).all()
    assert set(fact.loc[fact["month_key"] < "2012-03", "date_basis"]) == {"approval"}


@pytest.mark.slow
def test_flat_types_and_models_have_one_spelling_across_eras(history_build):
    fact = history_build["fact"]
    # the fixtures deliver both spellings of each
    assert {"NEW GENERATION", "New Generation", "2-ROOM", "MULTI GENERATION"} <= (
        history_build["raw_models"]
    )
    assert set(fact["flat_type"]) <= {"1 ROOM", "2 ROOM", "3 ROOM", "4 ROOM", "5 ROOM",
                                      "EXECUTIVE", "MULTI-GENERATION"}  # fmt: skip
    assert "MULTI-GENERATION" in set(fact.loc[fact["month_key"] < "2000-01", "flat_type"])
    models = set(fact["flat_model"])
    assert models <= set(flat_model_spellings().values())
    assert len(models) == len({m.upper() for m in models})
    assert {"New Generation", "2-room", "Multi Generation", "Improved", "3Gen"} <= models


@pytest.mark.slow
def test_storeys_prices_and_the_remaining_lease_are_harmonised(history_build):
    fact = history_build["fact"]
    five_wide = fact[fact["storey_upper"] - fact["storey_lower"] == 4]
    assert len(five_wide) > 0 and five_wide["month_key"].between("2012-01", "2014-12").all()
    assert RESOURCES[2].dataset_id in set(five_wide["dataset_id"])
    assert (fact["storey_lower"] <= fact["storey_upper"]).all()
    # 147000.0 (2000-2012) is 147000 dollars; the 1990 file's first row is 9000
    assert fact.loc[fact["month_key"] == "2000-01", "resale_price"].min() > 1000
    assert float(fact["resale_price"].min()) == 9000.0

    before_2015 = fact["month_key"] < "2015-01"
    assert fact.loc[before_2015, "remaining_lease_derived"].all()
    assert not fact.loc[~before_2015, "remaining_lease_derived"].any()
    # derived: 99 years less the months from January of the lease start to the sale month
    first = fact[(fact["month_key"] == "1990-01")].sort_values("_source_row").iloc[0]
    assert (first["lease_commence_year"], first["remaining_lease_months"]) == (1977, 1188 - 156)
    # 2015-2016: whole years, times twelve
    whole_years = fact.loc[fact["dataset_id"] == RESOURCES[3].dataset_id, "remaining_lease_months"]
    assert (whole_years % 12 == 0).all()


@pytest.mark.slow
def test_the_drift_table_shows_what_staging_changed_per_resource(history_build):
    drift = drift_by_resource(history_build["warehouse"]).set_index("dataset_id")
    assert list(drift.index) == [r.dataset_id for r in RESOURCES]
    assert drift["rows"].sum() == history_build["delivered"]
    nineties, current = drift.iloc[0], drift.iloc[-1]
    assert nineties["flat_model_respelled"] == nineties["rows"]  # all upper case
    assert nineties["flat_type_respelled"] > 0  # MULTI GENERATION
    assert (drift["remaining_lease_derived"] > 0).tolist() == [True, True, True, False, False]
    assert current["flat_model_respelled"] == current["flat_type_respelled"] == 0
    assert list(drift.iloc[2]["storeys_per_band"]) == [3, 5]


@pytest.mark.slow
def test_raw_s_dataset_id_cross_checks_the_resource_staging_gives(history_build, tmp_path: Path):
    """Where raw records the resource a row came from (_dataset_id), dbt's test
    assert_dataset_id_matches_the_delivered_resource fails on a row read as the wrong one."""
    warehouse = copy_warehouse(history_build["warehouse"], tmp_path / "crosscheck.duckdb")
    select = ["test", "--select", "assert_dataset_id_matches_the_delivered_resource"]
    with connect(warehouse) as con:
        con.execute(f"alter table {RAW_TABLE} add column if not exists _dataset_id varchar")
        for r in RESOURCES:
            con.execute(
                f"update {RAW_TABLE} set _dataset_id = ? where month between ? and ?",
                [r.dataset_id, r.first_month, r.last_month or "9999-12"],
            )
    code, output, _ = dbt(select, warehouse, tmp_path / "target")
    assert code == 0, output[-3000:]

    with connect(warehouse) as con:  # the 1990-01 rows said to come from the 2000s resource
        con.execute(
            f"update {RAW_TABLE} set _dataset_id = ? where month = '1990-01'",
            [RESOURCES[1].dataset_id],
        )
    code, _, results = dbt(select, warehouse, tmp_path / "target")
    assert code != 0
    (failed,) = [r for r in results["results"] if r["status"] == "fail"]
    assert failed["failures"] == 2  # the fixture's two rows of 1990-01


# ------------------------------------------- a warehouse built before the harmonisation

OLD_SHAPE = [
    "alter table marts.fct_resale_transactions drop column dataset_id",
    "alter table marts.fct_resale_transactions drop column date_basis",
    "alter table marts.fct_resale_transactions "
    "rename column remaining_lease_derived to is_remaining_lease_derived",
    "update marts.fct_resale_transactions set flat_model = upper(flat_model)",
]


@pytest.mark.slow
@pytest.mark.skipif(not shared_month_files(), reason="the shared 2023 deliveries are absent")
def test_a_fact_built_before_the_harmonisation_is_migrated_by_its_next_run(tmp_path: Path):
    """The fact as the model built it before (no dataset_id or date_basis, flat models upper
    case, is_remaining_lease_derived): a run of one month's window migrates it whole, to the
    fact a fresh build gives."""
    fresh = tmp_path / "fresh.duckdb"
    load_deliveries(fresh, shared_month_files())
    code, output, _ = dbt(["build"], fresh, tmp_path / "target")
    assert code == 0, output[-3000:]
    old = copy_warehouse(fresh, tmp_path / "old.duckdb")
    with connect(old) as con:
        for statement in OLD_SHAPE:
            con.execute(statement)
        (upper,) = con.execute(
            "select count(*) from marts.fct_resale_transactions where flat_model = 'MODEL A'"
        ).fetchone()
    assert upper > 0

    window = ["--vars", '{start_month: "2023-03", end_month: "2023-03"}']
    code, output, results = dbt(["build", *window], old, tmp_path / "target")

    assert code == 0, output[-3000:]
    assert set(statuses(results).values()) <= {"success", "pass"}
    with connect(old, read_only=True) as con:
        columns = {
            row[0] for row in con.execute("describe marts.fct_resale_transactions").fetchall()
        }
    assert {"dataset_id", "date_basis", "remaining_lease_derived"} <= columns
    assert "is_remaining_lease_derived" not in columns
    order = "transaction_id"
    shape = (
        "select transaction_id, month_key, dataset_id, date_basis, flat_model, "
        "remaining_lease_derived, resale_price from marts.fct_resale_transactions"
    )
    for warehouse in (fresh, old):
        with connect(warehouse) as con:
            con.execute(f"create or replace table main.shape as {shape}")
    assert table_checksum(old, "main.shape", order) == table_checksum(fresh, "main.shape", order)
    assert table_checksum(old, "main.shape", order)[0] == SHARED_TOTAL_ROWS
