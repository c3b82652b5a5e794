"""The classroom exercises: every unsolved exercise fails its self-check with the expected
message, the checks say what is wrong for typical mistakes, and a workspace never touches the
project's own warehouse or dbt project. (The solutions pass: ``pytest --nbval notebooks/``.)

The slow tests share one checkpoint, built once per session in a temporary folder, and run
the exercise notebooks with papermill as a learner's "Run All" would.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import nbformat
import pandas as pd
import pandera.pandas as pa
import papermill
import pytest
import yaml
from papermill.exceptions import PapermillExecutionError

from classroom.checkpoints import CHECKPOINTS_ENV, build_checkpoint
from classroom.exercises import EXERCISES, CheckResult, ExerciseError, NotDoneYet, exercise
from classroom.exercises.dbt_unit_test import EXISTING
from classroom.exercises.solutions import SOLUTIONS_DIR, TODO_TAG, exercise_path, solution_path
from classroom.exercises.workspace import CHECKPOINT_STAGE, EXERCISES_ENV, WINDOW, workspace
from hdb_elt.extract_load import run_extract_load
from hdb_elt.settings import DBT_PROJECT_DIR, REPO_ROOT, temporary_environ
from hdb_elt.stage_notebooks import KERNEL
from hdb_elt.validation import (
    RULES,
    Rule,
    read_deliveries,
    record_results,
    rules_table,
    validate_load,
)
from hdb_elt.warehouse import connect, ensure_warehouse

# What each unsolved exercise's self-check must say (NotDoneYet's message).
UNSOLVED_MESSAGES = {
    "01_add_a_validation_rule": ["not done yet, 0 right so far", "new_rule is still None", "Hint:"],
    "02_add_a_dbt_model": ["model_sql is still None", "model_yml is still None", "Hint:"],
    "03_write_a_dbt_unit_test": ["unit_test_yml is still None", "Hint:"],
    "04_redeliver_a_month": [
        "raw_rows_february is still None",
        "ids_added is still None",
        "explanation needs two or three sentences",
        "Hint:",
    ],
    "05_backfill_in_dagster": ["backfill_months is still None: no run was started", "Hint:"],
    "06_add_an_asset_check": ["new_check is still None", "Hint:"],
    "07_absorb_a_new_spelling": [
        "not done yet, 0 right so far",
        "new_spelling is still None",
        "Hint:",
    ],
}


# --- the notebooks' shape (no execution) -----------------------------------------------------


def code_cells(notebook) -> list:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def committed_exercise(name: str, folder: Path, path: Path | None = None) -> Path:
    """The exercise as committed, unexecuted. A learner who did the exercise and saved it (as
    the learner guide says) has outputs and answers in the file: then git's committed copy is
    written into ``folder`` and tested instead, so saved work never fails the tests."""
    path = path or exercise_path(name)
    notebook = nbformat.read(path, as_version=4)
    if not any(cell.get("outputs") for cell in code_cells(notebook)):
        return path
    relative = exercise_path(name).relative_to(REPO_ROOT).as_posix()
    shown = subprocess.run(
        ["git", "show", f"HEAD:{relative}"], cwd=REPO_ROOT, capture_output=True, check=True
    )
    copy = folder / "committed" / path.name
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_bytes(shown.stdout)
    return copy


def test_saved_learner_work_is_not_tested_as_the_exercise(tmp_path: Path) -> None:
    assert committed_exercise("01", tmp_path) == exercise_path("01")  # committed: no outputs
    saved = nbformat.read(exercise_path("01"), as_version=4)
    todo = next(c for c in saved.cells if TODO_TAG in c.metadata.get("tags", []))
    todo.source = "new_rule = 'my answer'"
    for cell in code_cells(saved):
        cell.outputs = [nbformat.v4.new_output("stream", text="done\n")]
    nbformat.write(saved, tmp_path / "saved.ipynb")
    tested = nbformat.read(committed_exercise("01", tmp_path, tmp_path / "saved.ipynb"), 4)
    assert not any(cell.get("outputs") for cell in code_cells(tested))
    assert (
        "# TODO" in next(c for c in tested.cells if TODO_TAG in c.metadata.get("tags", [])).source
    )


@pytest.mark.parametrize("name", list(EXERCISES))
def test_an_exercise_and_its_solution_differ_only_in_the_todo_cells(
    name: str, tmp_path: Path
) -> None:
    unsolved = nbformat.read(committed_exercise(name, tmp_path), as_version=4)
    solved = nbformat.read(solution_path(name), as_version=4)
    assert len(unsolved.cells) == len(solved.cells)
    todo = 0
    for index, (mine, theirs) in enumerate(zip(unsolved.cells, solved.cells, strict=True)):
        assert mine.cell_type == theirs.cell_type, index
        tags = mine.metadata.get("tags", [])
        assert tags == theirs.metadata.get("tags", []), index
        if TODO_TAG in tags:
            todo += 1
            assert "# TODO" in mine.source and " = None" in mine.source, index
            assert mine.source != theirs.source, f"cell {index} is not solved"
        elif index > 0:  # the title cell of a solution says it is one
            assert mine.source == theirs.source, f"cell {index} differs outside a TODO cell"
    assert todo >= 1
    assert ".assert_done()" in code_cells(unsolved)[-1].source
    # A learner opens the exercise clean; the solution is committed executed for nbval.
    assert all(not cell.outputs for cell in code_cells(unsolved))
    assert all(cell.execution_count for cell in code_cells(solved))
    assert "Well done!" in json.dumps(code_cells(solved)[-1].outputs)


def test_exercises_are_named_by_number_or_name() -> None:
    assert exercise("1").name == exercise("01").name == "01_add_a_validation_rule"
    assert exercise("add_a_dbt_model").name == "02_add_a_dbt_model"
    with pytest.raises(ExerciseError, match="expected one of 01_add_a_validation_rule"):
        exercise("99")


def test_a_check_result_lists_what_is_right_and_missing_with_a_hint() -> None:
    result = CheckResult(EXERCISES["01_add_a_validation_rule"])
    result.ok("the rule is a Rule.")
    result.miss("the gate lets the delivery through.", "look at the block column.")
    result.miss("something else.", "a second hint, not shown.")
    text = str(result)
    assert text.splitlines()[0].endswith("not done yet, 1 right so far, 2 still missing.")
    assert "Right:\n  - the rule is a Rule." in text
    assert "Still missing:\n  - the gate lets the delivery through.\n  - something else." in text
    assert text.endswith("Hint: look at the block column.")
    with pytest.raises(NotDoneYet) as raised:
        result.assert_done()
    assert str(raised.value) == text


def test_a_passing_check_prints_and_does_not_raise(capsys) -> None:
    result = CheckResult(EXERCISES["02_add_a_dbt_model"])
    result.ok("it builds.")
    result.assert_done()
    assert "all 1 checks pass. Well done!" in capsys.readouterr().out


# --- validate_load(extra_rules=...), the hook exercise 01 uses --------------------------------

ROW = {
    "month": "2023-05",
    "town": "BEDOK",
    "flat_type": "4 ROOM",
    "block": "308B",
    "street_name": "BEDOK NTH ST 3",
    "storey_range": "04 TO 06",
    "floor_area_sqm": "92",
    "flat_model": "Model A",
    "lease_commence_date": "1985",
    "remaining_lease": "61 years 04 months",
    "resale_price": "500000",
}


def rows_with_blocks(blocks: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame([{**ROW, "block": block} for block in blocks])
    return frame.assign(_source="f.csv", _source_row=range(2, len(frame) + 2), _load_id="l1")


BLOCK_RULE = Rule(
    "block_format",
    "blocking",
    "block is a block number",
    ("block",),
    lambda _window: pa.DataFrameSchema(
        {"block": pa.Column(nullable=True, checks=pa.Check.str_matches(r"^\d{1,4}[A-Z]?$"))}
    ),
    lambda column, value, row, window: f"{value!r} is not a block number",
)


def test_an_extra_rule_joins_the_gate_and_its_results() -> None:
    rows = rows_with_blocks(["308B", "BEDOK NTH ST 3", "12"])
    plain = validate_load(rows, "2023-05", "2023-05")
    assert not plain.blocked and list(plain.results["rule"]) == [
        *(r.name for r in RULES),
        "quarantine_threshold",
    ]
    report = validate_load(rows, "2023-05", "2023-05", extra_rules=[BLOCK_RULE])
    assert report.blocked
    assert str(report.blocking_failures[0]) == (
        "f.csv line 3, column block: 'BEDOK NTH ST 3' is not a block number "
        "(rule block_format, blocking)."
    )
    results = report.results.set_index("rule")
    assert results.loc["block_format", "failing_rows"] == 1
    assert "block_format" in set(rules_table(extra_rules=[BLOCK_RULE])["rule"])


def test_an_extra_rule_is_recorded_in_the_audit_tables(tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    ensure_warehouse(warehouse)
    quarantine = replace(BLOCK_RULE, severity="quarantine")
    report = validate_load(
        rows_with_blocks(["1", "X"] + ["2"] * 98), "2023-05", "2023-05", extra_rules=[quarantine]
    )
    assert not report.blocked  # 1 row in 100: at the threshold, not over it
    record_results(warehouse, report)
    with connect(warehouse, read_only=True) as con:
        recorded = con.execute(
            "select status, failing_rows from audit.validation_results where rule = 'block_format'"
        ).fetchall()
        quarantined = con.execute("select _source_row, rule from audit.quarantine").fetchall()
    assert recorded == [("fail", 1)]
    assert quarantined == [(3, "block_format")]


@pytest.mark.parametrize(
    ("extra", "error", "message"),
    [
        (["not a rule"], TypeError, "expected hdb_elt.validation.Rule"),
        ([RULES[4]], ValueError, "exists already"),
    ],
)
def test_extra_rules_must_be_rules_with_their_own_names(extra, error, message) -> None:
    with pytest.raises(error, match=message):
        validate_load(rows_with_blocks(["1"]), "2023-05", "2023-05", extra_rules=extra)


# --- running the exercises (slow: Meltano, dbt, kernels) ---------------------------------------


@pytest.fixture(scope="module")
def scratch(tmp_path_factory, shared_monthly: Path) -> Iterator[Path]:
    """Workspaces in a temporary folder, checkpoints in one shared by the session's tests,
    deliveries from the reference folder; the exercise checkpoint built once."""
    root = tmp_path_factory.mktemp("exercises")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(EXERCISES_ENV, str(root))
        patch.setenv(CHECKPOINTS_ENV, str(tmp_path_factory.getbasetemp() / "checkpoints"))
        patch.setenv("HDB_RESALE_DATA_DIR", str(shared_monthly))
        build_checkpoint(CHECKPOINT_STAGE, *WINDOW)
        yield root


def run_notebook(path: Path, output: Path) -> PapermillExecutionError | None:
    """Execute a notebook as "Run All" does; the error it stopped at, if any."""
    try:
        papermill.execute_notebook(
            str(path),
            str(output),
            kernel_name=KERNEL,
            cwd=str(path.parent),
            progress_bar=False,
        )
    except PapermillExecutionError as error:
        return error
    return None


@pytest.mark.slow
@pytest.mark.parametrize("name", list(EXERCISES))
def test_an_unsolved_exercise_fails_its_self_check_saying_what_is_missing(
    scratch: Path, tmp_path: Path, name: str
) -> None:
    error = run_notebook(committed_exercise(name, tmp_path), tmp_path / f"{name}.ipynb")
    assert error is not None, f"{name}: the unsolved self-check passed"
    assert error.ename == "NotDoneYet", f"{name} stopped early: {error.ename}: {error.evalue}"
    # Everything up to the self-check ran: it is the last code cell that failed.
    executed = nbformat.read(tmp_path / f"{name}.ipynb", as_version=4)
    failed = [i for i, c in enumerate(code_cells(executed)) if _has_error(c)]
    assert failed == [len(code_cells(executed)) - 1]
    for expected in UNSOLVED_MESSAGES[name]:
        assert expected in error.evalue, f"{name}: {expected!r} not in:\n{error.evalue}"


def _has_error(cell) -> bool:
    return any(output.get("output_type") == "error" for output in cell.get("outputs", []))


def test_every_exercise_has_its_expected_unsolved_message() -> None:
    assert set(UNSOLVED_MESSAGES) == set(EXERCISES)


# -- exercise 01: the rule

DIGITS_ONLY = pa.DataFrameSchema({"block": pa.Column(checks=pa.Check.str_matches(r"^\d{1,4}$"))})
TYPO = pa.DataFrameSchema({"blocks": pa.Column(checks=pa.Check.str_length(1, 4))})


@pytest.mark.slow
@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (BLOCK_RULE, None),
        (
            replace(BLOCK_RULE, name="block_digits", schema=lambda _w: DIGITS_ONLY),
            "row(s) of the good deliveries",
        ),
        (replace(BLOCK_RULE, severity="warning"), "only reports"),
        (replace(BLOCK_RULE, phrase=lambda value: f"{value} is bad"), "raised TypeError"),
        (replace(BLOCK_RULE, schema=lambda _w: TYPO), "which the rows do not have"),
        (replace(BLOCK_RULE, name="town_known"), "is taken"),
        ("block_format", "not a Rule"),
    ],
    ids=["right", "too-strict", "warning", "bad-phrase", "typo", "name-taken", "a-string"],
)
def test_the_rule_check_says_what_is_wrong(scratch: Path, rule, expected: str | None) -> None:
    from classroom.exercises.validation_rule import check_validation_rule, deliver_bad_february

    ws = workspace("01", activate=False)
    deliver_bad_february(ws)
    result = check_validation_rule(ws, rule)
    if expected is None:
        assert result.passed, str(result)
        assert "the gate stops the bad 2023-02 (your rule blocks it)" in str(result)
    else:
        assert not result.passed
        assert expected in " ".join(result.missing), str(result)
        assert result.hints


# -- exercise 02: the model


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "select storey_range, min(storey_lower) as storey_lower, count(*) as transactions, "
            "avg(resale_price) as median_price, median(price_per_sqm) as median_price_per_sqm "
            "from {{ ref('fct_resale_transactions') }} group by storey_range",
            "median_price is off",
        ),
        (
            "select storey_range, month_key, min(storey_lower) as storey_lower, "
            "count(*) as transactions, median(resale_price) as median_price, "
            "median(price_per_sqm) as median_price_per_sqm "
            "from {{ ref('fct_resale_transactions') }} group by storey_range, month_key",
            "tests do not all pass: unique_agg_storey_band_prices_storey_range (fail)",
        ),
        ("select storey_range from {{ ref('fct_resale_transaction') }}", "could not build"),
    ],
    ids=["mean-not-median", "per-month", "typo-in-ref"],
)
def test_the_model_check_says_what_is_wrong(scratch: Path, sql: str, expected: str) -> None:
    from classroom.exercises.dbt_model import MODEL_FILE, YML_FILE, check_dbt_model

    ws = workspace("02", activate=False)
    ws.write_file(MODEL_FILE, sql, variable="model_sql")
    ws.write_file(YML_FILE, YML, variable="model_yml")
    result = check_dbt_model(ws)
    assert not result.passed
    assert expected in " ".join(result.missing), str(result)


YML = """
models:
  - name: agg_storey_band_prices
    description: Prices per storey band.
    columns:
      - name: storey_range
        data_tests: [unique, not_null]
"""


@pytest.mark.slow
def test_the_model_check_wants_a_description_and_key_tests(scratch: Path) -> None:
    from classroom.exercises.dbt_model import MODEL_FILE, YML_FILE, check_dbt_model

    ws = workspace("02", activate=False)
    ws.write_file(MODEL_FILE, "select 1 as storey_range", variable="model_sql")
    ws.write_file(YML_FILE, "models:\n  - name: agg_storey_band_prices\n", variable="model_yml")
    result = check_dbt_model(ws)
    assert "a description of the model, a unique test on storey_range, a not_null test" in str(
        result
    )


# -- exercise 03: the unit test


def unit_test_yml(rows: list[tuple[str, str]]) -> str:
    given = "\n".join(
        f'          - {{month: "2023-01", flat_type: "{raw}", _source_row: {i}}}'
        for i, (raw, _) in enumerate(rows, start=2)
    )
    expect = "\n".join(
        f'        - {{_source_row: {i}, flat_type: "{clean}"}}'
        for i, (_, clean) in enumerate(rows, start=2)
    )
    return f"""
unit_tests:
  - name: test_my_flat_types
    model: stg_hdb__resale_flat_prices
    given:
      - input: source('hdb', 'latest_deliveries')
        rows:
{given}
      - input: source('audit', 'quarantine')
        rows: []
      - input: ref('resources')
      - input: ref('flat_models')
      - input: ref('flat_model_spellings')
    expect:
      rows:
{expect}
"""


@pytest.mark.slow
def test_a_unit_test_that_misses_a_mutant_is_not_enough(scratch: Path) -> None:
    from classroom.exercises.dbt_unit_test import YML_FILE, check_dbt_unit_test

    ws = workspace("03", activate=False)
    ws.write_file(YML_FILE, unit_test_yml([(" 4  room ", "4 ROOM")]), variable="unit_test_yml")
    result = check_dbt_unit_test(ws)
    assert "it passes on the real staging model." in result.right
    for part in ("trimmed", "made one", "upper-cased"):
        assert any(part in line and "catches that mistake" in line for line in result.right)
    assert result.missing == [
        "it still passes when 'MULTI GENERATION' is no longer spelled 'MULTI-GENERATION'."
    ]
    assert "give one row the flat_type 'MULTI GENERATION'" in str(result)


@pytest.mark.slow
def test_each_part_of_the_cleaning_needs_a_row_of_its_own(scratch: Path) -> None:
    """A test whose messy row has no double space inside cannot catch a lost
    regexp_replace, however well it tests the rest."""
    from classroom.exercises.dbt_unit_test import YML_FILE, check_dbt_unit_test

    ws = workspace("03", activate=False)
    rows = [(" 4 room ", "4 ROOM"), ("MULTI GENERATION", "MULTI-GENERATION")]
    ws.write_file(YML_FILE, unit_test_yml(rows), variable="unit_test_yml")
    result = check_dbt_unit_test(ws)
    assert result.missing == [
        "it still passes when runs of spaces inside a flat type are no longer made one."
    ]
    assert "such as '4  ROOM'" in str(result)


@pytest.mark.slow
def test_a_unit_test_with_a_wrong_expectation_fails_on_the_real_model(scratch: Path) -> None:
    from classroom.exercises.dbt_unit_test import YML_FILE, check_dbt_unit_test

    ws = workspace("03", activate=False)
    ws.write_file(YML_FILE, unit_test_yml([("4 room", "4 room")]), variable="unit_test_yml")
    result = check_dbt_unit_test(ws)
    assert "on the real model, your test does not pass: test_my_flat_types: fail" in str(result)


@pytest.mark.slow
def test_a_unit_test_without_the_seeds_says_to_name_them(scratch: Path) -> None:
    from classroom.exercises.dbt_unit_test import YML_FILE, check_dbt_unit_test

    ws = workspace("03", activate=False)
    yml = unit_test_yml([("MULTI GENERATION", "MULTI-GENERATION")])
    yml = yml.replace("      - input: ref('resources')\n      - input: ref('flat_models')\n", "")
    ws.write_file(YML_FILE, yml, variable="unit_test_yml")
    result = check_dbt_unit_test(ws)
    assert "on the real model, your test does not pass" in str(result)
    assert "name each seed the message names" in str(result)


# -- exercise 04: the answers, on the workspace the unsolved notebook left


def run_revision(ws) -> None:
    """Steps 2 and 3 of exercise 04, as its notebook runs them in an activated kernel."""
    from classroom.exercises.redelivery import deliver_revised_february

    deliver_revised_february(ws)
    with temporary_environ(ws.env()):
        run_extract_load(ws.settings)
        rows = read_deliveries(ws.warehouse_path, *WINDOW)
        record_results(ws.warehouse_path, validate_load(rows, *WINDOW))
        assert ws.run_dbt(["build", "--exclude-resource-type", "unit_test"]).ok


@pytest.mark.slow
def test_the_redelivery_check_names_each_wrong_answer(scratch: Path) -> None:
    from classroom.exercises.redelivery import check_redelivery

    ws = workspace("04", activate=False)
    answers = {
        "raw_rows_february": 1_830,  # the latest delivery only: raw keeps both
        "fact_rows_february": 1_830,
        "months_rebuilt": "2023-02",  # a string, not a list
        "ids_removed": 7,  # 1,837 - 1,830: but a corrected row is one id gone and one new
        "ids_added": 6,
        "explanation": "dbt rebuilt February.",
    }
    early = check_redelivery(ws, **answers)
    assert early.missing == [
        "the revised February is not in raw yet: run the cells of step 2 first."
    ]

    run_revision(ws)
    result = check_redelivery(ws, **answers)
    assert result.right == ["fact_rows_february = 1,830: right.", "ids_added = 6: right."]
    missing = " ".join(result.missing)
    assert "raw_rows_february = 1,830 is not right" in missing
    assert "months_rebuilt = '2023-02' is not right" in missing
    assert "ids_removed = 7 is not right" in missing
    assert "explanation needs two or three sentences" in missing
    assert "raw is append-only: count every delivery" in str(result)

    right = {**answers, "raw_rows_february": 3_667, "months_rebuilt": ("2023-02",)}
    right |= {"ids_removed": 13, "explanation": "Raw keeps " + "every delivery " * 10}
    assert check_redelivery(ws, **right).passed


# -- exercise 05: the backfill (the solution, run by nbval, backfills both months)


@pytest.mark.slow
def test_a_backfill_of_the_failing_month_alone_is_not_enough(scratch: Path, capsys) -> None:
    from classroom.exercises.dagster_backfill import (
        backfill,
        check_backfill,
        deliver_two_months,
        failed_runs,
        show_notebook,
    )

    ws = workspace("05", activate=False)
    deliver_two_months(ws)
    with temporary_environ(ws.env()):
        (outcome,) = backfill(ws, ["2023-04"])
        assert not outcome.success
        (failed,) = failed_runs(ws)
        assert (failed.month, failed.stage, failed.notebook.name) == (
            "2023-04",
            "validate",
            "02_validate.ipynb",
        )
        assert failed.notebook.is_relative_to(ws.runs_dir)
        show_notebook(failed.notebook)
        result = check_backfill(
            ws,
            backfill_months=["2023-04"],
            failed_month="2023-04",
            failed_stage="validate",
            blocking_rule="quarantine_threshold",
            quarantined_rows=109,
        )
    shown = capsys.readouterr().out
    assert "2023-04: extract_load ...\n2023-04: validate ...\n2023-04: FAILED\n" in shown
    assert "2023-04: FAILED\n  extract_load  success" in shown
    assert "(Dagster gave this run: start_month = '2023-04', end_month = '2023-04')" in shown
    assert (
        "ValidationBlocked: Validation blocked" in shown and "(rule quarantine_threshold" in shown
    )
    assert result.missing == [
        "no run of 2023-03 in the workspace's Dagster instance: the backfill must cover the "
        "months just delivered."
    ]


def test_the_backfill_check_teaches_blocking_versus_quarantine(monkeypatch) -> None:
    from classroom.exercises import dagster_backfill

    ran = dagster_backfill.FailedRun("2023-04", "validate", Path("02_validate.ipynb"))
    truth = {
        "runs": {"2023-03": 1, "2023-04": 1},
        "materialized": {asset: {"2023-03"} for asset in dagster_backfill.STAGE_ASSETS},
        "failed": [ran],
        "blocking_rule": "quarantine_threshold",
        "quarantined_rows": 109,
    }
    monkeypatch.setattr(dagster_backfill, "_truth", lambda ws: truth)
    answers = {
        "backfill_months": ["2023-03", "2023-04"],
        "failed_month": "2023-04",
        "failed_stage": "validate",
        "quarantined_rows": 109,
    }
    wrong = dagster_backfill.check_backfill(None, **answers, blocking_rule="resale_price_plausible")
    assert wrong.missing == ["blocking_rule = 'resale_price_plausible' is not right."]
    assert "a quarantine rule (resale_price_plausible) sets bad rows aside" in wrong.hints[0]
    assert "only a blocking rule stops a run" in wrong.hints[0]
    stage = dagster_backfill.check_backfill(
        None, **{**answers, "failed_stage": "transform"}, blocking_rule="quarantine_threshold"
    )
    assert "Bad rows are caught by validation, before anything is built" in stage.hints[0]
    right = dagster_backfill.check_backfill(None, **answers, blocking_rule="quarantine_threshold")
    assert right.passed
    assert "Quarantine keeps a month going without its bad rows; blocking stops the month" in str(
        right
    )


def test_a_stage_is_named_with_or_without_its_number() -> None:
    from classroom.exercises.dagster_backfill import _same, _stage

    assert _stage("02_validate") == _stage("validate") == "validate"
    assert _same(" validate", "validate") and _same("109", 109) and not _same("many", 109)


# -- exercise 06: the asset check


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("enough_sales_per_month", None),
        ("forgets_empty_months", "it passes on 2023-03, although the fact has no sale"),
        ("always_passes", "it passes when 2023-02 has only 500 sales"),
        ("on_the_wrong_asset", "it checks the asset 'validate'"),
        ("a_taken_name", "is taken by a check of the code location"),
        ("raises", "running it, the check raised KeyError"),
        ("counts", "not an asset check"),
    ],
)
def test_the_asset_check_check_says_what_is_wrong(
    scratch: Path, name: str, expected: str | None
) -> None:
    import exercise_asset_checks

    from classroom.exercises.dagster_check import check_asset_check

    ws = workspace("06", activate=False)
    result = check_asset_check(ws, getattr(exercise_asset_checks, name))
    if expected is None:
        assert result.passed, str(result)
    else:
        assert expected in " ".join(result.missing), str(result)
        assert result.hints


# -- exercise 07: the new spelling


def respell_and_build(ws):
    """Exercise 07's step 2: the re-delivered February through extract-load, the gate and a
    dbt build with no window. Returns the build."""
    from classroom.exercises.new_spelling import deliver_respelled_february

    deliver_respelled_february(ws)
    with temporary_environ(ws.env()):
        run_extract_load(ws.settings)
        rows = read_deliveries(ws.warehouse_path, *WINDOW)
        record_results(ws.warehouse_path, validate_load(rows, *WINDOW))
    run = ws.run_dbt(["build", "--exclude-resource-type", "unit_test"])
    assert run.ok, run.error_lines()
    return run


@pytest.mark.slow
def test_the_spelling_check_says_what_is_wrong(scratch: Path) -> None:
    from classroom.exercises.new_spelling import (
        FILE,
        MODEL,
        MODELS_SEED,
        REBUILD_FEBRUARY,
        SEED,
        SPELLING,
        add_spelling,
        check_new_spelling,
    )

    ws = workspace("07", activate=False)
    seed, models = ws.dbt_project_dir / SEED, ws.dbt_project_dir / MODELS_SEED
    right = f"{SPELLING},{MODEL}"
    early = check_new_spelling(ws, right)
    assert early.missing == [
        "the re-delivered 2023-02 is not in raw yet: run the cells of step 2 first."
    ]

    # What the learner sees first: the build passes, with a warning, and the fact sells a new
    # model, as many rows as the delivery writes it.
    delivered = (ws.checkpoint.deliveries_dir / FILE).read_text().count(f",{MODEL},")
    run = respell_and_build(ws)
    warned = run.table().query("status == 'warn'")
    assert list(warned["failures"]) == [delivered], run.table()
    assert "flat_models" in warned["name"].iloc[0]

    # The right line, but February not rebuilt: the fact still holds the new model.
    add_spelling(ws, right)
    result = check_new_spelling(ws, right)
    assert f"{delivered:,} rows of 2023-02 under {SPELLING!r}" in " ".join(result.missing)
    assert "then rebuild 2023-02 (step 4)" in str(result)

    # A wrong model: the counts per model say which.
    seed.write_text(f"spelling,flat_model\n{SPELLING},Improved\n")
    assert ws.run_dbt(REBUILD_FEBRUARY).ok
    result = check_new_spelling(ws, f"{SPELLING},Improved")
    missing = " ".join(result.missing)
    assert "rows per flat model are not those of the first delivery" in missing
    assert f"{MODEL!r} in 2023-02: 0 rows, {delivered:,} before" in missing
    assert "map nothing else" in str(result)

    # A new model instead of a new spelling.
    seed.write_text("spelling,flat_model\n")
    models.write_text(models.read_text() + f"{SPELLING}\n")
    assert ws.run_dbt(REBUILD_FEBRUARY).ok
    result = check_new_spelling(ws, SPELLING)
    assert f"yours changed ({SPELLING!r} added)" in " ".join(result.missing)
    assert f"put it in {SEED}" in str(result)

    # A model that does not exist: the seed's own test fails the build, the check says why.
    models.write_text((DBT_PROJECT_DIR / MODELS_SEED).read_text())
    seed.write_text(f"spelling,flat_model\n{SPELLING},New Gen\n")
    assert not ws.run_dbt(REBUILD_FEBRUARY).ok
    result = check_new_spelling(ws, f"{SPELLING},New Gen")
    assert "maps a spelling to a model that is not one of" in " ".join(result.missing)

    # The right line, February rebuilt: done.
    seed.write_text("spelling,flat_model\n")
    add_spelling(ws, right)
    assert ws.run_dbt(REBUILD_FEBRUARY).ok
    result = check_new_spelling(ws, right)
    assert result.passed, str(result)
    assert any("transaction ids of 2023-02 are the first delivery's" in r for r in result.right)

    # Raw edited to the known spelling: no longer as delivered.
    with connect(ws.warehouse_path) as con:
        con.execute(
            "update raw.resale_flat_prices set flat_model = ? where flat_model = ?",
            [MODEL, SPELLING],
        )
    result = check_new_spelling(ws, right)
    assert f"holds 0 rows written {SPELLING!r}, but {delivered:,} were delivered" in str(result)


# -- isolation


def tree_state(*folders: Path) -> dict[str, float]:
    """Every file under the folders, with its modification time."""
    return {
        str(path): path.stat().st_mtime
        for folder in folders
        if folder.exists()
        for path in folder.rglob("*")
        if path.is_file()
    }


@pytest.mark.slow
def test_a_solved_exercise_changes_nothing_outside_its_workspace(
    scratch: Path, tmp_path: Path
) -> None:
    project_state = [DBT_PROJECT_DIR, REPO_ROOT / "data" / "warehouse"]
    before = tree_state(*project_state)
    error = run_notebook(solution_path("02"), tmp_path / "02.ipynb")
    assert error is None, f"{error.ename}: {error.evalue}" if error else ""
    assert tree_state(*project_state) == before
    model = scratch / "02_add_a_dbt_model" / "dbt_resale_flat" / "models" / "marts"
    assert (model / "agg_storey_band_prices.sql").is_file()
    assert not (DBT_PROJECT_DIR / "models" / "marts" / "agg_storey_band_prices.sql").exists()


def test_the_solutions_folder_holds_one_solution_per_exercise() -> None:
    assert sorted(p.stem for p in SOLUTIONS_DIR.glob("*.ipynb")) == sorted(EXERCISES)


def run_all_in_one_kernel(path: Path, times: int) -> list[str]:
    """Execute a notebook ``times`` times in one kernel, as a learner pressing Run All again
    and again; the text its last cell printed each time (or the error it raised)."""
    from nbclient import NotebookClient

    verdicts = []
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name=KERNEL,
        timeout=600,
        resources={"metadata": {"path": str(path.parent)}},
    )
    with client.setup_kernel():
        for _ in range(times):
            for index, cell in enumerate(notebook.cells):
                if cell.cell_type == "code":
                    cell.outputs = []
                    client.execute_cell(cell, index)  # raises CellExecutionError on an error
            verdicts.append("".join(o.get("text", "") for o in code_cells(notebook)[-1].outputs))
    return verdicts


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["01_add_a_validation_rule", "04_redeliver_a_month", "07_absorb_a_new_spelling"]
)
def test_a_solution_passes_on_every_run_all_in_one_kernel(scratch: Path, name: str) -> None:
    """Each Run All starts the exercise over from the reference state, whatever the run before
    it left in the workspace (it once rebuilt that state from the broken delivery)."""
    verdicts = run_all_in_one_kernel(solution_path(name), times=3)
    assert len(verdicts) == 3
    for verdict in verdicts:
        assert "checks pass. Well done!" in verdict, verdict
    assert len(set(verdicts)) == 1, verdicts


def test_exercise_03_knows_every_unit_test_the_project_has() -> None:
    # A project test missing from EXISTING would be taken for the learner's own.
    staging = REPO_ROOT / "dbt_resale_flat" / "models" / "staging" / "_staging__models.yml"
    names = {test["name"] for test in yaml.safe_load(staging.read_text())["unit_tests"]}
    assert names == EXISTING
