"""Exercise 06 · Add an asset check to the Dagster code location.

The code location checks every stage's output (``dagster_orchestration/stages/``): the gate's
rules, the reconciliation of the fact with raw, unique ids, dbt's tests. None notices a month
that arrives with far too few sales, as a partial export would. The learner writes an
``@asset_check`` on the ``transform`` asset that fails when a month of the run has fewer than
:data:`MIN_SALES` sales in the fact. The self-check loads the code location with it, then runs
it (alone, as Dagster runs a check) on the workspace's months, where it must pass, and on a
month with no sales and a copy of the warehouse where February lost most of its sales, where it
must fail.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from io import StringIO

import pandas as pd
from dagster import (
    AssetChecksDefinition,
    AssetSelection,
    DagsterInstance,
    Definitions,
    define_asset_job,
)

from classroom.exercises.workspace import EXERCISES, CheckResult, Workspace
from dagster_orchestration.definitions import defs
from dagster_orchestration.partitions import PARTITION_TAG
from hdb_elt.settings import temporary_environ
from hdb_elt.warehouse import connect

EXERCISE = EXERCISES["06_add_an_asset_check"]
MIN_SALES = 1_000
ASSET = "transform"
GOOD_MONTHS = ("2023-01", "2023-02")
EMPTY_MONTH = "2023-03"  # no delivery, so no sales, in the workspace
TAMPERED_MONTH = "2023-02"
TAMPERED_SALES = 500
CHECK_JOB = "exercise_check_only"
# Dagster's console log would print every event: the check's result is what matters here.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Dagster's beta and preview notices
        yield


def existing_checks() -> pd.DataFrame:
    """The code location's asset checks: the asset, the check, blocking or not, what it checks."""
    with _quiet():
        rows = []
        for checks in defs.asset_checks or []:
            for spec in checks.check_specs:
                rows.append(
                    {
                        "asset": spec.asset_key.to_user_string(),
                        "check": spec.name,
                        "blocking": spec.blocking,
                        "description": spec.description,
                    }
                )
    return pd.DataFrame(rows, columns=["asset", "check", "blocking", "description"])


def definitions_with(new_check: object):
    """The code location's definitions with ``new_check`` added, validated as ``dagster dev``
    would load them; raises with Dagster's message if they do not load."""

    with _quiet():
        extra = [] if new_check is None else [new_check]
        merged = Definitions.merge(defs, Definitions(asset_checks=extra))
        Definitions.validate_loadable(merged)
    count = sum(len(list(c.check_specs)) for c in merged.asset_checks or [])
    print(f"The code location loads, with {count} asset checks" + (
        "." if new_check is None else f", yours among them: {_names(new_check)}."
    ))  # fmt: skip
    return merged


def _names(new_check) -> str:
    return ", ".join(
        f"{spec.asset_key.to_user_string()}.{spec.name}" for spec in new_check.check_specs
    )


def run_check(ws: Workspace, new_check: object, month: str) -> None:
    """Run ``new_check`` alone for one month's partition on the workspace's warehouse, and
    print whether it passed, with its metadata."""
    if new_check is None:
        print("new_check is still None: nothing to run.")
        return
    try:
        passed, metadata = _execute(ws, new_check, month)
    except RuntimeError as error:
        print(f"{month}: {error}")
        return
    shown = "; ".join(f"{key}: {_value(value)}" for key, value in metadata.items())
    print(f"{month}: {'passed' if passed else 'FAILED'}" + (f" ({shown})" if shown else ""))


def _value(value) -> str:
    text = str(getattr(value, "value", value))
    return text if len(text) <= 80 else text[:77] + "..."


def _execute(ws: Workspace, new_check, month: str, warehouse=None) -> tuple[bool, dict]:

    job = define_asset_job(CHECK_JOB, selection=AssetSelection.checks(new_check))
    # The code location's settings resource reads the environment when a run starts.
    where = {
        "HDB_WAREHOUSE_PATH": str(warehouse or ws.warehouse_path),
        "HDB_RESALE_DATA_DIR": str(ws.deliveries_dir),
    }
    with _quiet(), temporary_environ(where):
        merged = Definitions.merge(defs, Definitions(asset_checks=[new_check], jobs=[job]))
        with DagsterInstance.ephemeral() as instance:
            result = merged.resolve_job_def(CHECK_JOB).execute_in_process(
                instance=instance,
                run_config=QUIET,
                tags={PARTITION_TAG: month},
                raise_on_error=False,
            )
    evaluations = [
        event.event_specific_data
        for event in result.all_events
        if event.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    if not evaluations:
        failure = next((e for e in result.all_events if e.is_step_failure), None)
        error = failure.step_failure_data.error if failure else None
        while error is not None and error.cause is not None:  # the learner's own exception
            error = error.cause
        raise RuntimeError(
            f"the check raised {error.message.strip()}"
            if error
            else "the check ran but reported no result"
        )
    return bool(evaluations[0].passed), dict(evaluations[0].metadata)


def tampered_warehouse(ws: Workspace):
    """A copy of the workspace's warehouse where February kept only its first 500 sales."""
    copy = ws.root / "tampered" / "hdb_resale.duckdb"
    copy.parent.mkdir(exist_ok=True)
    shutil.copyfile(ws.warehouse_path, copy)
    with connect(copy) as con:
        con.execute(
            """delete from marts.fct_resale_transactions where month_key = ? and transaction_id
               not in (select transaction_id from marts.fct_resale_transactions
                       where month_key = ? order by _source_row limit ?)""",
            [TAMPERED_MONTH, TAMPERED_MONTH, TAMPERED_SALES],
        )
    return copy


# --- the self-check ----------------------------------------------------------------------------


def check_asset_check(ws: Workspace, new_check: object) -> CheckResult:
    """Is ``new_check`` an asset check on transform that the code location loads, passing on
    months with enough sales and failing on months with too few?"""

    result = CheckResult(EXERCISE)
    if new_check is None:
        result.miss(
            "new_check is still None: write your asset check in the TODO cell of step 3.",
            "start from unique_ids and transaction_ids_unique shown in step 2: a function of "
            "the window's settings, and a decorated check that calls it.",
        )
        return result
    if not isinstance(new_check, AssetChecksDefinition):
        result.miss(
            f"new_check is a {type(new_check).__name__}, not an asset check: decorate a "
            "function with @asset_check(asset=transform, ...).",
            "new_check must be the decorated function itself, not what it returns.",
        )
        return result
    specs = list(new_check.check_specs)
    taken = set(existing_checks()["check"])
    if specs[0].asset_key.to_user_string() != ASSET:
        result.miss(
            f"it checks the asset {specs[0].asset_key.to_user_string()!r}: the sales are "
            f"built by {ASSET!r}, so the check belongs there.",
            "@asset_check(asset=transform, ...), with transform imported from "
            "dagster_orchestration.stages.transform.",
        )
        return result
    if specs[0].name in taken:
        result.miss(
            f"the name {specs[0].name!r} is taken by a check of the code location.",
            "name the function after what it checks, such as enough_sales_per_month.",
        )
        return result
    try:
        with _quiet():
            definitions_with_quiet(new_check)
    except Exception as error:
        result.miss(
            f"the code location does not load with it: {error}",
            "Dagster's message names what is wrong: often a parameter without its type "
            "(context: AssetCheckExecutionContext, settings: HdbSettings).",
        )
        return result
    result.ok(f"the code location loads with your check {_names(new_check)}.")

    try:
        runs = {month: _execute(ws, new_check, month)[0] for month in (*GOOD_MONTHS, EMPTY_MONTH)}
        runs["tampered"] = _execute(ws, new_check, TAMPERED_MONTH, tampered_warehouse(ws))[0]
    except RuntimeError as error:
        result.miss(
            f"running it, {error}",
            "run your check on one month with run_check (step 4) and read its error.",
        )
        return result
    if all(runs[month] for month in GOOD_MONTHS):
        result.ok(f"it passes on {' and '.join(GOOD_MONTHS)}, which have enough sales.")
    else:
        wrong = [month for month in GOOD_MONTHS if not runs[month]]
        result.miss(
            f"it fails on {', '.join(wrong)}, which has more than {MIN_SALES:,} sales.",
            "count the sales of each month of the run (month_key between start and end) and "
            "compare each count with MIN_SALES; pass when none is below it.",
        )
    if not runs[EMPTY_MONTH]:
        result.ok(f"it fails on {EMPTY_MONTH}, a month with no sales at all.")
    else:
        result.miss(
            f"it passes on {EMPTY_MONTH}, although the fact has no sale of that month.",
            "a month with no rows has no count in a 'group by': compare the run's months with "
            "the months you found, or count with a left join from the months.",
        )
    if not runs["tampered"]:
        result.ok(f"it fails when {TAMPERED_MONTH} keeps only {TAMPERED_SALES} sales.")
    else:
        result.miss(
            f"it passes when {TAMPERED_MONTH} has only {TAMPERED_SALES} sales, fewer than "
            f"{MIN_SALES:,}.",
            "read the months from the run (check_settings(context, settings)), and the "
            "warehouse from settings.warehouse_path, not from a fixed path.",
        )
    return result


def definitions_with_quiet(new_check) -> None:

    with redirect_stdout(StringIO()):
        definitions_with(new_check)
