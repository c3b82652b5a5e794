"""How staging absorbs the drift of the five data.gov.sg resources, as tables notebook 03 shows.

:func:`harmonisation_cases` lists the rules staging applies, each as the delivered values of a
dbt unit test and what staging makes of them: read from the unit tests themselves
(``_staging__models.yml``), so the table shows what is tested, on any data.
:func:`drift_by_resource` counts, per resource in the warehouse, what staging changed: flat
types and models spelled anew, remaining leases derived, storey band widths.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from hdb_elt.settings import DBT_PROJECT_DIR
from hdb_elt.warehouse import RAW_TABLE, connect

STAGING_YML = DBT_PROJECT_DIR / "models" / "staging" / "_staging__models.yml"
STAGING_MODEL = "stg_hdb__resale_flat_prices"
# The unit tests of staging's harmonisation rules, in the order the notebook tells them. The
# flat type's (MULTI GENERATION) is exercise 03's to write.
HARMONISATION_TESTS = (
    "test_flat_model_spellings",
    "test_storey_range_split",
    "test_remaining_lease_parsing",
    "test_date_basis_and_dataset_id",
    "test_prices_written_with_a_decimal",
)


def _values(row: dict, leave_out: tuple[str, ...]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in row.items() if k not in leave_out)


def harmonisation_cases(path: Path = STAGING_YML) -> pd.DataFrame:
    """One row per case of staging's harmonisation unit tests: the rule, the delivered values
    and what staging makes of them (rule, month, delivered, staged)."""
    tests = {t["name"]: t for t in yaml.safe_load(path.read_text())["unit_tests"]}
    rows = []
    for name in HARMONISATION_TESTS:
        test = tests[name]
        (given,) = [
            g["rows"] for g in test["given"] if g["input"] == "source('hdb', 'latest_deliveries')"
        ]
        expected = {row["_source_row"]: row for row in test["expect"]["rows"]}
        for row in given:
            rows.append(
                {
                    "rule": name.removeprefix("test_").replace("_", " "),
                    "month": row.get("month"),
                    "delivered": _values(row, ("month", "_source_row")),
                    "staged": _values(expected[row["_source_row"]], ("_source_row",)),
                }
            )
    return pd.DataFrame(rows, columns=["rule", "month", "delivered", "staged"])


def drift_by_resource(warehouse_path: Path) -> pd.DataFrame:
    """Per resource in the fact: its months, rows and date basis, the rows whose flat type or
    model staging spelled otherwise than delivered, the remaining leases it derived, and the
    storey band widths."""
    with connect(warehouse_path, read_only=True) as con:
        return con.execute(
            f"""
            select
                fact.dataset_id,
                any_value(fact.date_basis) as date_basis,
                min(fact.month_key) as first_month,
                max(fact.month_key) as last_month,
                count(*) as rows,
                count(*) filter (where raw.flat_type is distinct from fact.flat_type)
                    as flat_type_respelled,
                count(*) filter (where raw.flat_model is distinct from fact.flat_model)
                    as flat_model_respelled,
                count(*) filter (where fact.remaining_lease_derived) as remaining_lease_derived,
                list(distinct fact.storey_upper - fact.storey_lower + 1
                     order by fact.storey_upper - fact.storey_lower + 1) as storeys_per_band
            from marts.fct_resale_transactions as fact
            join {RAW_TABLE} as raw using (_load_id, _source, _source_row)
            group by fact.dataset_id
            order by first_month
            """
        ).df()
