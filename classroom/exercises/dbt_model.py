"""Exercise 02 · Add a dbt model with tests: prices by storey band.

The learner adds ``agg_storey_band_prices`` to the workspace's copy of the dbt project: one row
per storey band (``storey_range``, such as ``07 TO 09``) over every sale in the fact, with the
number of sales and the median prices; and a yml beside it with a description and tests. The
self-check builds it with dbt, runs its tests, and compares its numbers with the fact.
"""

from __future__ import annotations

import pandas as pd
import yaml

from classroom.exercises.workspace import EXERCISES, CheckResult, Workspace

EXERCISE = EXERCISES["02_add_a_dbt_model"]
MODEL = "agg_storey_band_prices"
RELATION = f"marts.{MODEL}"
MODEL_FILE = f"dbt_resale_flat/models/marts/{MODEL}.sql"
YML_FILE = "dbt_resale_flat/models/marts/_exercise__models.yml"
COLUMNS = ("storey_range", "storey_lower", "transactions", "median_price", "median_price_per_sqm")
KEY_TESTS = ("unique", "not_null")
EXPECTED = """
select
    storey_range,
    min(storey_lower) as storey_lower,
    count(*) as transactions,
    median(resale_price) as median_price,
    median(price_per_sqm) as median_price_per_sqm
from marts.fct_resale_transactions
group by storey_range
"""


def preview_model(ws: Workspace) -> pd.DataFrame | str:
    """The model's rows, lowest band first; or a sentence saying it is not built yet."""
    if not ws.has_relation(RELATION):
        return f"{RELATION} is not in the workspace's warehouse yet: build it first."
    columns = set(ws.query(f"select * from {RELATION} limit 0").columns)
    order = "storey_lower" if "storey_lower" in columns else "1"
    return ws.query(f"select * from {RELATION} order by {order}")


def check_dbt_model(ws: Workspace) -> CheckResult:
    """Does the workspace's project build ``agg_storey_band_prices``, tested, with the fact's
    numbers?"""
    result = CheckResult(EXERCISE)
    if not (ws.root / MODEL_FILE).is_file():
        result.miss(
            "the model is not written yet: model_sql is still None (step 3).",
            "start from agg_monthly_town_prices.sql shown in step 2: read the fact with "
            "ref('fct_resale_transactions') and group by storey_range instead.",
        )
    if not (ws.root / YML_FILE).is_file():
        result.miss(
            "the yml is not written yet: model_yml is still None (step 4).",
            "copy the shape of the agg_monthly_town_prices entry in _marts__models.yml: "
            "models: - name, description, columns with data_tests.",
        )
    if result.missing:
        return result
    result.ok(f"the model and its yml are in the workspace's project ({MODEL_FILE}).")

    if not _check_yml(ws, result):
        return result
    run = ws.run_dbt(["build", "--select", MODEL])
    if not _check_build(run, result):
        return result
    _check_numbers(ws, result)
    return result


def _check_yml(ws: Workspace, result: CheckResult) -> bool:
    try:
        document = yaml.safe_load((ws.root / YML_FILE).read_text()) or {}
    except yaml.YAMLError as error:
        result.miss(
            f"the yml does not parse: {str(error).splitlines()[0]}.",
            "yml is indented with spaces only, two per level; a list item starts with '- '.",
        )
        return False
    models = [m for m in document.get("models") or [] if m.get("name") == MODEL]
    if not models:
        result.miss(
            f"the yml has no entry for the model: expected 'models:' with '- name: {MODEL}'.",
            f"the name in the yml must be the file's name without .sql: {MODEL}.",
        )
        return False
    model = models[0]
    problems = []
    if not str(model.get("description") or "").strip():
        problems.append("a description of the model")
    columns = {c.get("name"): c for c in model.get("columns") or [] if isinstance(c, dict)}
    key = columns.get("storey_range") or {}
    tests = {_test_name(t) for t in (key.get("data_tests") or key.get("tests") or [])}
    problems += [f"a {name} test on storey_range" for name in KEY_TESTS if name not in tests]
    if problems:
        result.miss(
            "the yml still needs " + ", ".join(problems) + ".",
            "every model has a description and its key gets unique and not_null: "
            "columns: - name: storey_range, data_tests: [unique, not_null].",
        )
        return False
    result.ok("the yml describes the model and tests its key (unique, not_null).")
    return True


def _test_name(test: object) -> str:
    return test if isinstance(test, str) else next(iter(test), "") if isinstance(test, dict) else ""


def _check_build(run, result: CheckResult) -> bool:
    table = run.table()
    model = table[(table["kind"] == "model") & (table["name"] == MODEL)]
    if model.empty or model["status"].iloc[0] != "success":
        detail = model["message"].iloc[0] if not model.empty else run.error_lines()
        result.miss(
            f"dbt could not build the model:\n    {detail}",
            "read dbt's message: a typo in a column name, a missing comma, or "
            "ref('...') naming a model that does not exist are the usual causes.",
        )
        return False
    tests = table[table["kind"] == "test"]
    failed = tests[tests["status"] != "pass"]
    if len(tests) < len(KEY_TESTS) or not failed.empty:
        names = ", ".join(f"{r.name} ({r.status})" for r in failed.itertuples()) or "none ran"
        result.miss(
            f"dbt built the model, but its tests do not all pass: {names}.",
            "a failing unique test on storey_range means the model has several rows per band: "
            "group by storey_range only.",
        )
        return False
    result.ok(f"dbt builds it and its {len(tests)} tests pass.")
    return True


def _check_numbers(ws: Workspace, result: CheckResult) -> None:
    built = ws.query(f"select * from {RELATION}")
    missing = [c for c in COLUMNS if c not in built.columns]
    if missing:
        result.miss(
            "the model lacks column(s) " + ", ".join(missing) + ".",
            "name the columns with 'as': count(*) as transactions, ...",
        )
        return
    expected = ws.query(EXPECTED).set_index("storey_range")
    built = built.set_index("storey_range")
    if set(built.index) != set(expected.index):
        result.miss(
            f"it has {len(built)} rows, but the fact has {len(expected)} storey bands: one row "
            "per storey_range is expected.",
            "group by storey_range, over every month of the fact.",
        )
        return
    for column in COLUMNS[1:]:
        got = pd.to_numeric(built.loc[expected.index, column]).astype("float64")
        want = expected[column].astype("float64")
        wrong = (got - want).abs() > 0.01
        if wrong.any():
            band = wrong[wrong].index[0]
            result.miss(
                f"{column} is off for {wrong.sum()} band(s): for {band!r} it is "
                f"{got[band]:,.2f}, the fact gives {want[band]:,.2f}.",
                _NUMBER_HINTS.get(column, "compare your SQL with the column's description."),
            )
            return
    result.ok(
        f"its numbers match the fact: {int(expected['transactions'].sum()):,} sales in "
        f"{len(expected)} storey bands."
    )


_NUMBER_HINTS = {
    "transactions": "count(*) per band, over every month: no where clause is needed.",
    "median_price": "median(resale_price), not avg: a few dear flats pull a mean up.",
    "median_price_per_sqm": (
        "median(price_per_sqm): the median of each sale's price per sqm, not the median price "
        "divided by the median area."
    ),
    "storey_lower": "the band's lowest storey: min(storey_lower) (it is the same in a band).",
}
