"""Exercise 05 · Backfill months in Dagster, and read the recorded notebook of a failed run.

Two months arrive, March and April 2023; April's export turned one price in twenty into 1 SGD.
The learner backfills the two monthly partitions through the project's Dagster code location,
one run per partition as the UI's backfill does, in the workspace's own Dagster instance and
warehouse. March materializes every stage; April's run stops at the validate stage. The learner
then reads that run's recorded notebook (Dagster keeps every executed stage notebook, the failed
one too) to say what failed and why.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import nbformat
import pandas as pd
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter

from classroom.checkpoints import find_deliveries
from classroom.exercises.workspace import EXERCISES, CheckResult, Workspace
from classroom.runner import RUNNING, execute
from dagster_orchestration.constants import FIRST_MONTH
from dagster_orchestration.home import prepare_home
from dagster_orchestration.partitions import PARTITION_TAG, is_partition, run_months
from hdb_elt.stage_notebooks import STAGE_NAMES, stage_name

EXERCISE = EXERCISES["05_backfill_in_dagster"]
GOOD, BAD = "2023-03", "2023-04"
MONTHS = [GOOD, BAD]
SPOIL_EVERY = 20  # every 20th sale of the bad month is priced at 1 SGD
STAGE_ASSETS = STAGE_NAMES  # the stage assets' keys
HIDDEN_TAGS = ("parameters", "injected-parameters", "injected-by-dagster", "injected-teardown")


@contextmanager
def instance(ws: Workspace) -> Iterator:
    """The workspace's Dagster instance (its DAGSTER_HOME, with the project's dagster.yaml)."""

    home = prepare_home(ws.dagster_home)
    with DagsterInstance.from_config(str(home)) as dagster:
        yield dagster


def deliver_two_months(ws: Workspace) -> str:
    """Put March and April 2023 into the workspace's deliveries (April spoiled); describe them."""
    # Where the workspace's own months came from (the kernel's settings now point at the
    # workspace's deliveries, which hold only those).
    source = find_deliveries(MONTHS, Path(ws.checkpoint.info.get("source", ws.deliveries_dir)))
    shutil.copy(source / f"resale-flat-prices-{GOOD}.csv", ws.deliveries_dir)
    lines = (source / f"resale-flat-prices-{BAD}.csv").read_text(encoding="utf-8").splitlines()
    for index in range(1, len(lines), SPOIL_EVERY):
        fields = lines[index].split(",")
        lines[index] = ",".join([*fields[:-1], "1"])
    (ws.deliveries_dir / f"resale-flat-prices-{BAD}.csv").write_text(
        "\n".join(lines) + "\n", encoding="utf-8"
    )
    counts = {
        month: _rows(ws.deliveries_dir / f"resale-flat-prices-{month}.csv") for month in MONTHS
    }
    return "New deliveries in the workspace: " + ", ".join(
        f"{month} ({rows:,} rows)" for month, rows in counts.items()
    )


def _rows(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines()) - 1


def materialized(ws: Workspace) -> pd.DataFrame:
    """Each stage asset and the monthly partitions the workspace's instance has materialized."""

    with instance(ws) as dagster:
        rows = [
            {
                "asset": asset,
                "materialized partitions": ", ".join(
                    sorted(dagster.get_materialized_partitions(AssetKey(asset)))
                )
                or "none",
            }
            for asset in STAGE_ASSETS
        ]
    return pd.DataFrame(rows)


def backfill(ws: Workspace, months: object) -> list:
    """One run per month, in order, as the job's backfill starts them (one at a time); an
    asset backfill would run the months as one range, and one bad month would fail them all.

    Prints each stage as it starts and what each run did as it ends, without run ids or
    timings (they change from run to run).
    """
    if months is None:
        print("backfill_months is still None: nothing to run.")
        return []
    if isinstance(months, str) or not all(isinstance(m, str) for m in months):
        raise TypeError("backfill_months must be a list of months, such as ['2023-01'].")

    wrong = [m for m in months if not is_partition(m)]
    if wrong:
        raise ValueError(
            f"{', '.join(wrong)}: not a monthly partition (YYYY-MM, from {FIRST_MONTH})."
        )
    outcomes = []
    with instance(ws) as dagster, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Dagster's beta and preview notices
        for month in months:

            def started(line: str, month: str = month) -> None:
                # A run takes about a minute: say each stage as it starts (without timings,
                # which change from run to run), then the run's verdict.
                if line.endswith(RUNNING):
                    print(f"{month}: {line.split()[0]} ...", flush=True)

            outcome = execute(month, month, dagster, progress=started)
            print(describe_run(outcome), flush=True)
            outcomes.append(outcome)
    return outcomes


def describe_run(outcome) -> str:
    """A run's verdict, stage by stage, with its checks; the first line of a failure."""
    lines = [f"{outcome.window}: {'success' if outcome.success else 'FAILED'}"]
    lines += outcome.step_lines()
    if outcome.failure:
        lines.append("  " + outcome.failure.splitlines()[0])
    return "\n".join(lines)


@dataclass(frozen=True)
class FailedRun:
    month: str
    stage: str
    notebook: Path  # the executed notebook, where it stopped (an .html is beside it)


def failed_runs(ws: Workspace) -> list[FailedRun]:
    """The workspace's failed runs, oldest first, with the stage that failed and its notebook."""

    found = []
    with instance(ws) as dagster:
        runs = dagster.get_runs(RunsFilter(statuses=[DagsterRunStatus.FAILURE]))
        for run in reversed(runs):
            month = run_months(run.tags)[0]
            stats = dagster.get_run_step_stats(run.run_id)
            stage = next((s.step_key for s in stats if s.status.value == "FAILURE"), "?")
            notebooks = sorted((ws.runs_dir / month).glob(f"*-{run.run_id[:8]}/*.ipynb"))
            failed = [n for n in notebooks if n.stem.split("_", 1)[-1] == stage]
            found.append(FailedRun(month, stage, (failed or notebooks or [Path("?")])[-1]))
    for run in found:
        where = run.notebook.relative_to(ws.root) if run.notebook.is_absolute() else run.notebook
        print(
            f"{run.month}: the {run.stage} stage failed; its recorded notebook: "
            f"{where.parts[0]}/{run.month}/<run>/{where.name} (and .html beside it)"
        )
    return found


def show_notebook(path: Path, *, max_lines: int = 12) -> None:
    """Print a recorded notebook as a reader scrolls it: each cell's first line and its outputs.

    The cells Dagster and dagstermill add (parameters, context, teardown) are summed up in one
    line: the months the run was given.
    """
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.get("tags", [])
        if "injected-by-dagster" in tags:
            given = [
                line for line in cell.source.splitlines() if line.startswith(("start_", "end_"))
            ]
            print(f"(Dagster gave this run: {', '.join(given)})\n")
        if any(tag in HIDDEN_TAGS for tag in tags) or not cell.source.strip():
            continue
        first = cell.source.strip().splitlines()[0]
        print(f"[{cell.execution_count or ' '}] {first}")
        for output in cell.get("outputs", []):
            print(_indent(_output_text(output), max_lines))
        print()


def _output_text(output) -> str:
    if output.get("output_type") == "error":
        return f"{output['ename']}: {output['evalue']}"
    if output.get("output_type") == "stream":
        return output.get("text", "")
    data = output.get("data", {})
    text = data.get("text/markdown") or data.get("text/plain", "")  # a table shown as markdown
    return "".join(text) if isinstance(text, list) else text


def _indent(text: str, max_lines: int) -> str:
    lines = text.rstrip().splitlines()
    if len(lines) > max_lines:
        lines = [*lines[:max_lines], f"... ({len(lines) - max_lines} more lines)"]
    return "\n".join(f"    {line}" for line in lines)


# --- the self-check ----------------------------------------------------------------------------


def _truth(ws: Workspace) -> dict:

    with instance(ws) as dagster:
        runs = {
            month: dagster.get_runs(RunsFilter(tags={PARTITION_TAG: month})) for month in MONTHS
        }
        done = {
            asset: dagster.get_materialized_partitions(AssetKey(asset)) for asset in STAGE_ASSETS
        }
    failed = failed_runs_quiet(ws)
    rule, rows = _blocking_result(ws)
    return {
        "runs": {month: len(found) for month, found in runs.items()},
        "materialized": done,
        "failed": failed,
        "blocking_rule": rule,
        "quarantined_rows": rows,
    }


def failed_runs_quiet(ws: Workspace) -> list[FailedRun]:

    with redirect_stdout(StringIO()):
        return failed_runs(ws)


def _blocking_result(ws: Workspace) -> tuple[str | None, int | None]:
    """The blocking rule that failed for the bad month's rejected delivery (the gate records
    it in audit.rejected_deliveries), and the rows that broke row-level rules (what the
    quarantine threshold counts)."""
    found = ws.query(
        """
        with rejected as (
            select _load_id from audit.rejected_deliveries where month = ?
            order by rejected_at desc limit 1
        )
        select rule, failing_rows from audit.validation_results
        where month = ? and severity = 'blocking' and status = 'fail'
            and _load_id in (select _load_id from rejected)
        order by rule
        """,
        [BAD, BAD],
    )
    if found.empty:
        return None, None
    return str(found["rule"].iloc[0]), int(found["failing_rows"].iloc[0])


def check_backfill(
    ws: Workspace,
    *,
    backfill_months: object,
    failed_month: object,
    failed_stage: object,
    blocking_rule: object,
    quarantined_rows: object,
) -> CheckResult:
    """Did the backfill run both months, and are the answers about the failed run right?"""
    result = CheckResult(EXERCISE)
    if backfill_months is None:
        result.miss(
            "backfill_months is still None: no run was started (step 3).",
            "backfill the two months that were just delivered: a list such as ['2023-01', ...].",
        )
        return result
    truth = _truth(ws)
    missing_runs = [month for month in MONTHS if not truth["runs"][month]]
    if missing_runs:
        result.miss(
            f"no run of {', '.join(missing_runs)} in the workspace's Dagster instance: the "
            "backfill must cover the months just delivered.",
            f"backfill_months = {MONTHS!r}, then run the backfill cell again.",
        )
        return result
    result.ok(f"you backfilled {GOOD} and {BAD}: one run each in the workspace's instance.")
    if all(GOOD in truth["materialized"][asset] for asset in STAGE_ASSETS):
        result.ok(f"every stage of {GOOD} is materialized.")
    else:
        result.miss(
            f"not every stage of {GOOD} is materialized.",
            "run the notebook from the top: the backfill needs a fresh workspace.",
        )

    rule, rows = truth["blocking_rule"], truth["quarantined_rows"]
    answers = {
        "failed_month": (
            failed_month,
            BAD,
            "the month whose run says FAILED above: a run stands for one month, and the other "
            "month's run went on as if nothing had happened.",
        ),
        "failed_stage": (
            _stage(failed_stage),
            truth["failed"][-1].stage if truth["failed"] else None,
            "where is the gate? Bad rows are caught by validation, before anything is built: "
            "the stage marked 'failure' stopped the run, and every stage after it was skipped, "
            "so the marts never saw the bad month.",
        ),
        "blocking_rule": (
            blocking_rule,
            rule,
            "a quarantine rule (resale_price_plausible) sets bad rows aside and lets the month "
            "go on; only a blocking rule stops a run. Which blocking rule counts the quarantined "
            "rows and closes the gate when there are too many? The error at the end of the "
            "recorded notebook names it: '(rule ..., blocking)'.",
        ),
        "quarantined_rows": (
            quarantined_rows,
            rows,
            "not the rows of the month: the rows that broke a row-level (quarantine) rule, which "
            "the threshold compares with 1% of the month. The error says 'month ...: N of ... "
            "rows failed row-level rules'.",
        ),
    }
    for name, (answer, right, hint) in answers.items():
        if answer is None:
            result.miss(f"{name} is still None.", hint)
        elif _same(answer, right):
            result.ok(f"{name} = {answer!r}: right.")
        else:
            result.miss(f"{name} = {answer!r} is not right.", hint)
    if result.passed:
        result.ok(
            f"so: {rows} rows broke a quarantine rule, more than 1% of {BAD}, and the blocking "
            f"rule {rule} stopped the run at the gate. Quarantine keeps a month going without "
            "its bad rows; blocking stops the month, and the marts keep what they had."
        )
    return result


def _stage(value: object) -> object:
    """``"02_validate"`` and ``"validate"`` name the same stage."""
    return stage_name(value) if isinstance(value, str) and value[:2].isdigit() else value


def _same(answer: object, right: object) -> bool:
    if isinstance(right, int):
        try:
            return int(answer) == right
        except (TypeError, ValueError):
            return False
    return isinstance(answer, str) and answer.strip() == right
