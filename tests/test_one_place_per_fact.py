"""Facts that must be written twice, because SQL and YAML cannot import Python, kept equal.

Each fact has one place, and the others read it (an import, a dbt source or macro). Where a
copy must stay, it carries a comment naming its original and this file, and a test here
parses both and compares them: change one without the other and a test fails.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import duckdb
import yaml
from tap_hdb_resale.deliveries import COLUMNS
from tap_hdb_resale.tap import TapHdbResale

from hdb_elt.settings import DBT_PROJECT_DIR, MELTANO_PROJECT_DIR
from hdb_elt.warehouse import LATEST_DELIVERIES, RAW_TABLE, connect, ensure_warehouse

SOURCES_YML = DBT_PROJECT_DIR / "models" / "staging" / "_hdb__sources.yml"
MARTS_YML = DBT_PROJECT_DIR / "models" / "marts" / "_marts__models.yml"
FLAT_TYPES_SEED = DBT_PROJECT_DIR / "seeds" / "flat_types.csv"
AUDIT_MACRO = DBT_PROJECT_DIR / "macros" / "ensure_audit_tables.sql"


def dbt_source_tables() -> dict[str, dict]:
    """``{"hdb.resale_flat_prices": {...}, ...}``: the dbt sources' tables by source and name."""
    sources = yaml.safe_load(SOURCES_YML.read_text())["sources"]
    return {
        f"{source['name']}.{table['name']}": {**table, "schema": source["schema"]}
        for source in sources
        for table in source["tables"]
    }


def columns_of(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    return [(row[0], row[1]) for row in con.execute(f"describe {table}").fetchall()]


def test_dbt_reads_the_warehouse_own_raw_table_and_latest_deliveries_view() -> None:
    tables = dbt_source_tables()
    raw, latest = tables["hdb.resale_flat_prices"], tables["hdb.latest_deliveries"]
    assert f"{raw['schema']}.{raw['name']}" == RAW_TABLE
    assert f"{latest['schema']}.{latest['name']}" == LATEST_DELIVERIES


def test_dbt_declares_the_raw_columns_of_the_tap_and_the_warehouse(tmp_path: Path) -> None:
    """The raw columns in _hdb__sources.yml: the tap's eleven, in delivery order, then the load
    metadata, exactly the columns of the table and view the warehouse creates."""
    ensure_warehouse(tmp_path / "w.duckdb")
    with connect(tmp_path / "w.duckdb", read_only=True) as con:
        raw_table = [name for name, _ in columns_of(con, RAW_TABLE)]
        latest_view = [name for name, _ in columns_of(con, LATEST_DELIVERIES)]
    tables = dbt_source_tables()
    for key in ("hdb.resale_flat_prices", "hdb.latest_deliveries"):
        declared = [column["name"] for column in tables[key]["columns"]]
        assert declared[: len(COLUMNS)] == list(COLUMNS), key
        assert declared == raw_table == latest_view, key


def test_on_run_start_creates_quarantine_exactly_like_the_warehouse(tmp_path: Path) -> None:
    """The dbt hook's audit.quarantine DDL and hdb_elt.warehouse's give the same columns."""
    body = re.search(
        r"{% macro ensure_audit_tables\(\) %}(.*?){% endmacro %}", AUDIT_MACRO.read_text(), re.S
    )
    assert body is not None, "ensure_audit_tables macro not found"
    from_dbt = duckdb.connect()
    from_dbt.execute(body.group(1))

    ensure_warehouse(tmp_path / "w.duckdb")
    with connect(tmp_path / "w.duckdb", read_only=True) as con:
        from_package = columns_of(con, "audit.quarantine")
    assert columns_of(from_dbt, "audit.quarantine") == from_package


def test_the_flat_types_are_the_same_at_the_gate_in_the_seed_and_in_the_marts_tests() -> None:
    """The seed flat_types.csv (dim_flat_type) is dbt's list; the fact's accepted_values test
    and the validation gate's KNOWN_FLAT_TYPES repeat it."""
    from hdb_elt.validation import KNOWN_FLAT_TYPES

    with FLAT_TYPES_SEED.open(newline="", encoding="utf-8") as handle:
        seeded = [row["flat_type"] for row in csv.DictReader(handle)]
    models = {model["name"]: model for model in yaml.safe_load(MARTS_YML.read_text())["models"]}
    fact_columns = {c["name"]: c for c in models["fct_resale_transactions"]["columns"]}
    (accepted,) = [
        test["accepted_values"]["arguments"]["values"]
        for test in fact_columns["flat_type"]["data_tests"]
        if isinstance(test, dict) and "accepted_values" in test
    ]
    assert seeded == list(accepted) == list(KNOWN_FLAT_TYPES)


RESOURCES_SEED = DBT_PROJECT_DIR / "seeds" / "resources.csv"


def test_the_resources_seed_is_the_tap_s_table_of_resources() -> None:
    """dbt's seeds/resources.csv (staging's dataset_id and date_basis) repeats
    tap_hdb_resale.resources.RESOURCES."""
    from tap_hdb_resale.resources import RESOURCES

    expected = [
        {
            "dataset_id": r.dataset_id,
            "first_month": r.first_month,
            "last_month": r.last_month or "",
            "date_basis": r.date_basis,
        }
        for r in RESOURCES
    ]
    with RESOURCES_SEED.open(newline="", encoding="utf-8") as handle:
        assert list(csv.DictReader(handle)) == expected


def test_the_gate_knows_the_towns_and_flat_models_of_dbt_s_seeds() -> None:
    """The gate reads the seeds (hdb_elt.seeds): its towns are dim_town's, its flat model
    spellings staging's, one spelling per model whatever the case."""
    from hdb_elt.normalisation import NORMALISED_SPELLINGS
    from hdb_elt.validation import KNOWN_TOWNS

    with (DBT_PROJECT_DIR / "seeds" / "town_regions.csv").open(encoding="utf-8") as handle:
        assert tuple(row["town"] for row in csv.DictReader(handle)) == KNOWN_TOWNS
    assert "LIM CHU KANG" in KNOWN_TOWNS
    with (DBT_PROJECT_DIR / "seeds" / "flat_models.csv").open(encoding="utf-8") as handle:
        models = [row["flat_model"] for row in csv.DictReader(handle)]
    assert len({m.upper() for m in models}) == len(models)
    harmonised = {
        expected for column, _, expected in NORMALISED_SPELLINGS if column == "flat_model"
    }
    assert harmonised - set(models) == {"Loft Villa"}  # the one model the seed lacks, on purpose


STAGING_YML = DBT_PROJECT_DIR / "models" / "staging" / "_staging__models.yml"


def test_the_gate_reads_other_spellings_of_a_flat_model_as_staging_does(
    tmp_path: Path, monkeypatch
) -> None:
    """Staging's unit test of seeds/flat_model_spellings.csv, run through the gate's Python
    (hdb_elt.normalisation, reading a copy of the seeds holding the test's rows): the same
    flat models come out. The project's seed has no other spelling yet (exercise 07 adds one)."""
    import pandas as pd

    from hdb_elt.normalisation import harmonise_flat_model
    from hdb_elt.seeds import SEEDS_DIR_ENV, flat_model_spellings

    tests = yaml.safe_load(STAGING_YML.read_text())["unit_tests"]
    test = next(t for t in tests if t["name"] == "test_flat_model_other_spellings")
    given = {g["input"]: g.get("rows") for g in test["given"]}
    for seed, columns in (
        ("flat_models", ["flat_model"]),
        ("flat_model_spellings", ["spelling", "flat_model"]),
    ):
        with (tmp_path / f"{seed}.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(given[f"ref('{seed}')"])
    assert given["ref('flat_model_spellings')"], "the unit test gives other spellings"

    rows = given["source('hdb', 'latest_deliveries')"]
    monkeypatch.setenv(SEEDS_DIR_ENV, str(tmp_path))
    gate = harmonise_flat_model(pd.Series([r["flat_model"] for r in rows]))
    expected = {r["_source_row"]: r["flat_model"] for r in test["expect"]["rows"]}
    assert dict(zip([r["_source_row"] for r in rows], gate, strict=True)) == expected

    # The project's own seeds: exercise 07's spelling is not absorbed yet (else the exercise
    # would be solved before it starts).
    monkeypatch.delenv(SEEDS_DIR_ENV)
    assert "NEW-GENERATION" not in flat_model_spellings()


def test_staging_and_the_bench_floor_join_the_flat_model_spellings_seed() -> None:
    """The seed the gate reads is the one staging and its copy in bench/floor.py join."""
    staging = DBT_PROJECT_DIR / "models" / "staging" / "stg_hdb__resale_flat_prices.sql"
    floor = DBT_PROJECT_DIR.parent / "bench" / "floor.py"
    assert "ref('flat_model_spellings')" in staging.read_text()
    assert 'SEEDS / "flat_model_spellings.csv"' in floor.read_text()


def test_meltano_hands_the_tap_the_catalog_it_would_discover() -> None:
    """meltano.yml names a committed catalog, so Meltano does not start the tap a second time
    to discover it: the file must be what the tap's discovery says."""
    extractor = next(
        plugin
        for plugin in yaml.safe_load((MELTANO_PROJECT_DIR / "meltano.yml").read_text())["plugins"][
            "extractors"
        ]
        if plugin["name"] == "tap-hdb-resale"
    )
    committed = json.loads((MELTANO_PROJECT_DIR / extractor["catalog"]).read_text())
    tap = TapHdbResale(
        config={"start_month": "2023-01", "end_month": "2023-01"}, validate_config=False
    )
    assert committed == tap.catalog_dict, (
        "Regenerate the catalog: cd meltano && .meltano/extractors/tap-hdb-resale/venv/bin/"
        "tap-hdb-resale --config <a config with start_month, end_month> --discover > "
        f"{extractor['catalog']}"
    )


def test_the_class_instance_reads_its_storage_from_the_variable_the_class_server_prints() -> None:
    """dagster_class.yaml names DAGSTER_PG_URL (YAML cannot import it); the class server prints
    it, and the instance choice checks it, from dagster_orchestration.constants."""
    from dagster_orchestration.constants import DAGSTER_CLASS_YAML, DAGSTER_PG_URL_ENV

    config = yaml.safe_load(DAGSTER_CLASS_YAML.read_text())
    assert config["storage"]["postgres"]["postgres_url"] == {"env": DAGSTER_PG_URL_ENV}


def test_the_reconciliation_test_reads_the_window_the_test_stage_records() -> None:
    """dbt's macro recorded_run_window reads the variable hdb_elt.transform.window_record sets
    (dbt cannot import it): with another name, the lake's reconciliation would check every month,
    other runs' unbuilt ones included."""
    from hdb_elt.transform import RUN_WINDOW, window_record

    (variable,) = window_record("2023-01", "2023-02")
    assert variable == f"DBT_ENV_CUSTOM_ENV_{RUN_WINDOW}"
    macro = (DBT_PROJECT_DIR / "macros" / "month_window.sql").read_text()
    assert f"env_var('{variable}', '')" in macro
