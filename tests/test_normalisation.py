"""The spellings hdb_elt.normalisation normalises, fed through both the gate and staging:
the gate lets each through (no rule fails on it) and staging makes of it exactly the value
the module says. So the gate never quarantines what staging was written to clean."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from dbt_support import dbt

from hdb_elt.normalisation import NORMALISED_SPELLINGS, normalise
from hdb_elt.validation import validate_load
from hdb_elt.warehouse import RAW_TABLE, connect, ensure_warehouse

GOOD_ROW = {
    "month": "2023-05",
    "town": "ANG MO KIO",
    "flat_type": "4 ROOM",
    "block": "308B",
    "street_name": "ANG MO KIO AVE 1",
    "storey_range": "19 TO 21",
    "floor_area_sqm": "92",
    "flat_model": "Model A",
    "lease_commence_date": "2012",
    "remaining_lease": "88 years 04 months",
    "resale_price": "560888",
}
# The staging column each source column becomes.
STAGED = {"lease_commence_date": "lease_commence_year", "remaining_lease": "remaining_lease_months"}


def spelled_rows() -> pd.DataFrame:
    """One row per normalised spelling, each otherwise a good row (its own block, so no two
    are identical twins), lines 2, 3, ..."""
    rows = pd.DataFrame(
        [
            {**GOOD_ROW, "block": f"{100 + i}", column: delivered}
            for i, (column, delivered, _) in enumerate(NORMALISED_SPELLINGS)
        ]
    )
    rows["_source"] = "/in/resale-flat-prices-2023-05.csv"
    rows["_source_row"] = range(2, len(rows) + 2)
    rows["_load_id"] = "spellings"
    return rows


def test_the_gate_lets_every_normalised_spelling_through():
    report = validate_load(spelled_rows(), "2023-05", "2023-05")

    flagged = report.failures[report.failures["severity"] != "info"]
    assert flagged.empty, flagged[["_source_row", "rule", "detail"]].to_string()
    assert not report.blocked


def test_normalise_leaves_control_characters_and_the_month_alone():
    text = pd.DataFrame([{**GOOD_ROW, "month": " 2023-05", "town": "\tBEDOK"}]).astype("string")
    clean = normalise(text)
    assert clean.loc[0, "month"] == " 2023-05"  # the window keys on the month as delivered
    assert clean.loc[0, "town"] == "\tBEDOK"  # a tab is an error, not a spelling


@pytest.mark.slow
def test_staging_makes_of_every_spelling_what_the_module_says(tmp_path: Path):
    warehouse = tmp_path / "spellings.duckdb"
    ensure_warehouse(warehouse)
    rows = spelled_rows().assign(_loaded_at=datetime(2024, 1, 1))
    with connect(warehouse) as con:
        con.register("delivered", rows)
        con.execute(f"insert into {RAW_TABLE} by name select * from delivered")

    code, output, _ = dbt(
        # the view and the seeds it joins (flat_models, resources)
        [
            "build", "--select", "+stg_hdb__resale_flat_prices",
            "--resource-type", "seed", "--resource-type", "model",
        ],
        warehouse,
        tmp_path / "target",
    )  # fmt: skip
    assert code == 0, output

    with connect(warehouse, read_only=True) as con:
        staged = con.execute(
            "select * from staging.stg_hdb__resale_flat_prices order by _source_row"
        ).df()
    assert len(staged) == len(NORMALISED_SPELLINGS)
    for (column, delivered, expected), row in zip(
        NORMALISED_SPELLINGS, staged.to_dict("records"), strict=True
    ):
        value = row[STAGED.get(column, column)]
        shown = f"{value:.2f}" if column in ("floor_area_sqm", "resale_price") else str(value)
        assert shown == expected, f"{column} {delivered!r}: staging gives {value!r}"
