"""Exercise 03 · Write a dbt unit test: the cleaning of ``flat_type`` in staging.

Staging turns a delivered flat type into its clean form: trimmed, upper case, single spaces,
and ``MULTI GENERATION`` spelled ``MULTI-GENERATION``. The learner writes a dbt unit test for
it. The self-check runs the test on the real model (it must pass), then on *mutants*, copies of
the project with one part of that cleaning removed (each must make the test fail): a test
that cannot fail when the logic breaks does not test it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import yaml

from classroom.exercises.workspace import EXERCISES, CheckResult, Workspace

EXERCISE = EXERCISES["03_write_a_dbt_unit_test"]
MODEL = "stg_hdb__resale_flat_prices"
MODEL_SQL = f"models/staging/{MODEL}.sql"
YML_FILE = "dbt_resale_flat/models/staging/_exercise__unit_tests.yml"
# The unit tests the project already has (tests/test_exercises.py keeps this list equal to
# the staging yml's): a test of another name is the learner's.
EXISTING = {
    "test_remaining_lease_parsing",
    "test_storey_range_split",
    "test_transaction_id_on_identical_rows",
    "test_flat_model_spellings",
    "test_flat_model_other_spellings",
    "test_date_basis_and_dataset_id",
    "test_prices_written_with_a_decimal",
}

# The cleaning as it stands in the staging model, and a way of breaking each of its parts.
CLEANING = """        replace(
            upper(regexp_replace(trim(flat_type), ' +', ' ', 'g')),
            'MULTI GENERATION',
            'MULTI-GENERATION'
        ) as flat_type,"""


@dataclass(frozen=True)
class Mutant:
    name: str
    broken: str  # what the mutant does wrong, as a learner would say it
    sql: str
    hint: str


MUTANTS = (
    Mutant(
        "no_multi_generation",
        "'MULTI GENERATION' is no longer spelled 'MULTI-GENERATION'",
        "        upper(regexp_replace(trim(flat_type), ' +', ' ', 'g')) as flat_type,",
        "give one row the flat_type 'MULTI GENERATION' and expect 'MULTI-GENERATION'.",
    ),
    Mutant(
        "no_trim",
        "flat types are no longer trimmed",
        "        replace(upper(regexp_replace(flat_type, ' +', ' ', 'g')), 'MULTI GENERATION', "
        "'MULTI-GENERATION') as flat_type,",
        "give one row spaces before and after its flat type, such as ' 4 ROOM ', and expect "
        "'4 ROOM'.",
    ),
    Mutant(
        "no_single_space",
        "runs of spaces inside a flat type are no longer made one",
        "        replace(upper(trim(flat_type)), 'MULTI GENERATION', 'MULTI-GENERATION') "
        "as flat_type,",
        "give one row two spaces inside its flat type, such as '4  ROOM', and expect '4 ROOM'.",
    ),
    Mutant(
        "no_upper",
        "flat types are no longer upper-cased",
        "        replace(regexp_replace(trim(flat_type), ' +', ' ', 'g'), 'MULTI GENERATION', "
        "'MULTI-GENERATION') as flat_type,",
        "give one row a flat type in lower case, such as '4 room', and expect '4 ROOM'.",
    ),
)


def check_dbt_unit_test(ws: Workspace) -> CheckResult:
    """Does the learner's unit test pass on the real model and fail on every mutant?"""
    result = CheckResult(EXERCISE)
    path = ws.root / YML_FILE
    if not path.is_file():
        result.miss(
            "the unit test is not written yet: unit_test_yml is still None (step 4).",
            "copy test_storey_range_split shown in step 3, rename it, and change the given "
            "rows and the expected rows to be about flat_type.",
        )
        return result
    names = _learner_tests(path, result)
    if not names:
        return result
    result.ok(f"the yml defines {_plural(len(names), 'unit test')} on {MODEL}: {', '.join(names)}.")

    run = ws.run_dbt(["test", "--select", *names])
    table = run.table()
    mine = table[table["kind"] == "unit_test"]
    if mine.empty or (mine["status"] != "pass").any():
        detail = (
            "; ".join(f"{r.name}: {r.status} {r.message}".strip() for r in mine.itertuples())
            or run.error_lines()
        )
        result.miss(
            f"on the real model, your test does not pass: {detail}",
            "dbt wants every input of the model in given: name each seed the message names, "
            "as in the example (- input: ref('<seed>'), no rows: dbt reads the seed's file)."
            if "depends on a node named" in detail
            else "dbt's message shows the expected and actual rows side by side: the expected "
            "rows must be what the model really gives for your input rows.",
        )
        return result
    result.ok("it passes on the real staging model.")

    for mutant in MUTANTS:
        caught = _run_on_mutant(ws, mutant, names)
        if caught is None:
            result.miss(
                f"the staging model in your workspace no longer holds the original flat_type "
                f"cleaning, so the mutant '{mutant.name}' cannot be made.",
                "start the exercise over (step 1) to get a fresh copy of the project.",
            )
        elif caught:
            result.ok(f"it fails when {mutant.broken}: it catches that mistake.")
        else:
            result.miss(f"it still passes when {mutant.broken}.", mutant.hint)
    return result


def _learner_tests(path, result: CheckResult) -> list[str]:
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        result.miss(
            f"the yml does not parse: {str(error).splitlines()[0]}.",
            "yml is indented with spaces only; each row is {column: value, ...} on one line.",
        )
        return []
    tests = [t for t in document.get("unit_tests") or [] if isinstance(t, dict)]
    names = [
        t.get("name") for t in tests if t.get("model") == MODEL and t.get("name") not in EXISTING
    ]
    if not names:
        result.miss(
            f"the yml has no new unit test on {MODEL}: expected 'unit_tests:' with an entry "
            f"of your own name and 'model: {MODEL}'.",
            "the name must be new (not one of the project's tests), such as "
            "test_flat_type_cleaning.",
        )
        return []
    about_flat_type = [
        t.get("name")
        for t in tests
        if t.get("name") in names
        and any("flat_type" in (row or {}) for row in (t.get("expect") or {}).get("rows") or [])
    ]
    if not about_flat_type:
        result.miss(
            "its expected rows do not mention flat_type, so it cannot check the cleaning.",
            "expect rows such as {_source_row: 2, flat_type: 'MULTI-GENERATION'}.",
        )
        return []
    return names


def _run_on_mutant(ws: Workspace, mutant: Mutant, names: list[str]) -> bool | None:
    """True if a learner's test fails on the mutant, False if all pass, None if no mutant."""
    original = (ws.dbt_project_dir / MODEL_SQL).read_text()
    if CLEANING not in original:
        return None
    project = ws.root / "mutants" / mutant.name / "dbt_resale_flat"
    shutil.rmtree(project.parent, ignore_errors=True)
    shutil.copytree(ws.dbt_project_dir, project, ignore=shutil.ignore_patterns("target", "logs"))
    (project / MODEL_SQL).write_text(original.replace(CLEANING, mutant.sql))
    run = ws.run_dbt(["test", "--select", *names], project_dir=project)
    tests = run.table().query("kind == 'unit_test'")
    return not run.ok or bool((tests["status"] != "pass").any())


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
