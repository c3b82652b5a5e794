"""The test stage: dbt's data and unit tests, and a reconciliation of the fact with raw.

:func:`run_tests` runs ``dbt test`` as a subprocess and turns its ``run_results.json`` into a
pass/fail table; :func:`reconciliation` counts, per month, the latest raw delivery, its
quarantined rows and the fact's rows, reading the warehouse read-only and closing it at once;
:func:`raise_on_failures` is the gate: it raises :class:`QualityCheckFailed`, naming what
failed, when an error-severity test fails or a month does not reconcile. Warn-severity
failures are shown in the table, never raised.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from hdb_elt.months import Month
from hdb_elt.settings import Settings
from hdb_elt.transform import (
    RUN_WINDOW,
    missing_results,
    new_run_target,
    plain_output,
    read_run_results,
    recorded_window,
    run_dbt,
    window_env,
    window_record,
)
from hdb_elt.warehouse import (
    LATEST_DELIVERIES,
    connect,
    describe_warehouse,
    ensure_latest_deliveries,
    lock_error_from_text,
)

FACT_TABLE = "marts.fct_resale_transactions"
TEST_COLUMNS = ["test", "kind", "model", "column", "severity", "status", "failures", "name"]
RECONCILIATION_COLUMNS = [
    "month",
    "raw_rows",
    "quarantined",
    "expected",
    "fact_rows",
    "difference",
    "status",
]
# dbt's statuses for a test that did not pass: "fail" (rows found; "warn" instead when the
# test's severity is warn) and "error" (the test could not run at all).
FAILED, ERRORED, WARNED = "fail", "error", "warn"


class QualityCheckFailed(RuntimeError):
    """An error-severity test failed or a month does not reconcile; the message names them."""

    def __init__(self, message: str, tests: list[str], months: list[str]) -> None:
        self.tests = tests
        self.months = months
        super().__init__(message)


class DbtTestRunError(RuntimeError):
    """dbt could not run the tests at all (a project error, a locked warehouse...)."""


# --- dbt's tests ---------------------------------------------------------------------------


# dbt copies the variables named DBT_ENV_CUSTOM_ENV_<name> into its artifacts' metadata (as
# <name>) and reads them nowhere else, so no parse depends on them: run_tests records there
# which window it tested, for whoever reads its results (the test asset's metadata).
# The window a ``dbt test`` run tested: dbt runs with none, so the pipeline records it.
TESTED_WINDOW = RUN_WINDOW
tested_window = recorded_window


def run_tests(settings: Settings) -> pd.DataFrame:
    """Run ``dbt test`` (data tests and unit tests) and return the pass/fail table.

    dbt runs with no window: the data tests check the whole of each table, and each unit test
    sets its own window (``overrides: vars``), which a window from the pipeline must not
    change. So dbt reuses the project the transform stage parsed (a new ``--vars`` would
    re-parse all of it). Failing tests do not raise here: they are rows of the table (see
    :func:`raise_on_failures`). :class:`DbtTestRunError` if dbt could not run the tests.
    """
    target = new_run_target()
    completed = run_dbt(
        ["test"],
        settings,
        capture=True,
        env={
            **window_env(),  # no window, not even one inherited
            **window_record(settings.start_month, settings.end_month),
            "DBT_TARGET_PATH": str(target),
        },
    )
    results = read_run_results(target)
    if completed.returncode != 0:
        locked = lock_error_from_text(settings.warehouse_path, plain_output(completed))
        if locked is not None:
            raise locked
    if results is None:
        if completed.returncode == 0:
            raise DbtTestRunError(f"dbt test finished, but {missing_results(target)}")
        raise DbtTestRunError(
            f"dbt test stopped before running any test (exit code {completed.returncode}):\n"
            f"{plain_output(completed)[-3000:]}"
        )
    manifest = json.loads((target / "manifest.json").read_text())
    tests = pass_fail_table(results, manifest)
    others_failed = [
        f"{r['unique_id']}: {(r.get('message') or '').strip()}"
        for r in results
        if not r["unique_id"].startswith(("test.", "unit_test.")) and r["status"] == ERRORED
    ]
    if others_failed or (completed.returncode != 0 and not _not_passed(tests).any()):
        raise DbtTestRunError(
            f"dbt test failed outside the tests (exit code {completed.returncode}): "
            + ("; ".join(others_failed) or plain_output(completed)[-3000:])
        )
    return tests


def pass_fail_table(results: list[dict], manifest: dict) -> pd.DataFrame:
    """The tests among dbt's ``results`` (``run_results.json``) as a table, with ``manifest``.

    One row per test: ``test`` (the generic test, such as ``unique``, or the singular or unit
    test's name), ``kind`` (``data`` or ``unit``), the ``model`` (or raw table) and ``column``
    it checks, ``severity``, ``status`` (``pass``, ``warn``, ``fail``, ``error``), ``failures``
    (rows found) and ``name``, dbt's node name, which ``dbt test --select`` takes.
    Data tests first, then unit tests, each by model and name.
    """
    rows = []
    for result in results:
        unique_id = result["unique_id"]
        if unique_id.startswith("test."):
            rows.append(_data_test_row(manifest["nodes"][unique_id], manifest))
        elif unique_id.startswith("unit_test."):
            unit = manifest["unit_tests"][unique_id]
            rows.append(_unit_test_row(unit))
        else:
            continue
        rows[-1]["status"] = result["status"]
        rows[-1]["failures"] = result.get("failures")
    frame = pd.DataFrame(rows, columns=TEST_COLUMNS).astype({"failures": "Int64"})
    return frame.sort_values(["kind", "model", "name"], ignore_index=True)


def _data_test_row(node: dict, manifest: dict) -> dict:
    generic = (node.get("test_metadata") or {}).get("name")
    return {
        "test": generic or node["name"],
        "kind": "data",
        "model": _tested_relation(node, manifest),
        "column": node.get("column_name") or "",
        "severity": str(node["config"].get("severity") or "error").lower(),
        "name": node["name"],
    }


def _unit_test_row(unit: dict) -> dict:
    # A unit test has no severity: a failing one is always an error.
    return {
        "test": unit["name"],
        "kind": "unit",
        "model": unit["model"],
        "column": "",
        "severity": "error",
        "name": unit["name"],
    }


def _tested_relation(node: dict, manifest: dict) -> str:
    """The model a test is about (its attached model, else the models it reads), else the
    source table (as ``schema.table``)."""
    attached = node.get("attached_node")
    if attached and attached in manifest["nodes"]:
        return manifest["nodes"][attached]["name"]
    upstream = node["depends_on"]["nodes"]
    models = [manifest["nodes"][u]["name"] for u in upstream if u.startswith("model.")]
    if models:
        return ", ".join(sorted(models))
    sources = [manifest["sources"][u] for u in upstream if u in manifest.get("sources", {})]
    return ", ".join(sorted(f"{s['schema']}.{s['identifier']}" for s in sources))


def _not_passed(tests: pd.DataFrame) -> pd.Series:
    return tests["status"].isin([FAILED, ERRORED])


def blocks_the_pipeline(tests: pd.DataFrame) -> pd.Series:
    """Tests that stop the pipeline: an error-severity failure, or a test that could not run."""
    return (tests["status"] == ERRORED) | (
        (tests["status"] == FAILED) & (tests["severity"] != WARNED)
    )


# --- reconciliation ------------------------------------------------------------------------


def reconciliation(warehouse_path: Path, start: Month | str, end: Month | str) -> pd.DataFrame:
    """Per month of the window: does the fact hold the latest delivery minus quarantined rows?

    ``raw_rows``: rows of the month's latest accepted delivery (``raw.latest_deliveries``);
    ``quarantined``: those of them in ``audit.quarantine`` (a row failing several rules counts
    once); ``expected`` = raw_rows - quarantined; ``fact_rows``: the fact's rows of the month;
    ``difference`` = fact_rows - expected. ``status`` is ``ok``, ``mismatch``, or ``no data``
    for a month with neither a delivery nor fact rows.
    """
    months = [str(m) for m in Month.parse(str(start)).range_to(Month.parse(str(end)))]
    ensure_latest_deliveries(warehouse_path)
    with connect(warehouse_path, read_only=True) as con:
        tables = {
            f"{schema}.{name}"
            for schema, name in con.execute(
                "select table_schema, table_name from information_schema.tables"
            ).fetchall()
        }
        if FACT_TABLE not in tables:
            raise FileNotFoundError(
                f"{FACT_TABLE} is not in the warehouse {describe_warehouse(warehouse_path)} yet: "
                "run the transform stage first (the 03 notebook, or make run)."
            )
        # Before validate or dbt has ever run, audit.quarantine may be absent: nothing is.
        quarantine = (
            "select _load_id, _source, _source_row from audit.quarantine"
            if "audit.quarantine" in tables
            else "select null::varchar as _load_id, null::varchar as _source, "
            "null::bigint as _source_row where false"
        )
        frame = con.execute(
            f"""
            with months as (select unnest(?::varchar[]) as month),
            latest as (
                select trim(month) as month, _load_id, _source, _source_row
                from {LATEST_DELIVERIES}
                where trim(month) between ? and ?
            ),
            quarantined as (select distinct _load_id, _source, _source_row from ({quarantine})),
            delivered as (
                select latest.month, count(*) as raw_rows,
                    count(quarantined._load_id) as quarantined
                from latest
                left join quarantined
                    on latest._load_id = quarantined._load_id
                    and latest._source = quarantined._source
                    and latest._source_row = quarantined._source_row
                group by 1
            ),
            fact as (
                select month_key as month, count(*) as fact_rows from {FACT_TABLE}
                where month_key between ? and ?
                group by 1
            )
            select months.month,
                coalesce(raw_rows, 0) as raw_rows,
                coalesce(quarantined, 0) as quarantined,
                coalesce(raw_rows, 0) - coalesce(quarantined, 0) as expected,
                coalesce(fact_rows, 0) as fact_rows
            from months
            left join delivered on months.month = delivered.month
            left join fact on months.month = fact.month
            order by months.month
            """,
            [months, months[0], months[-1], months[0], months[-1]],
        ).df()
    counts = ["raw_rows", "quarantined", "expected", "fact_rows"]
    frame = frame.astype(dict.fromkeys(counts, "int64"))
    frame["difference"] = frame["fact_rows"] - frame["expected"]
    frame["status"] = "ok"
    frame.loc[frame["difference"] != 0, "status"] = "mismatch"
    frame.loc[(frame["raw_rows"] == 0) & (frame["fact_rows"] == 0), "status"] = "no data"
    return frame[RECONCILIATION_COLUMNS]


# --- the gate ------------------------------------------------------------------------------


def quality_summary(tests: pd.DataFrame, recon: pd.DataFrame) -> str:
    """One line: tests by status, and how many months reconcile."""
    by_status = tests["status"].value_counts()
    statuses = ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
    kinds = tests["kind"].value_counts()
    months = recon["status"].value_counts()
    reconciled = [f"{months.get('ok', 0)} month(s) reconcile"]
    if months.get("mismatch", 0):
        reconciled.append(f"{months['mismatch']} do not")
    if months.get("no data", 0):
        reconciled.append(f"{months['no data']} have no data")
    return (
        f"{len(tests)} tests ({kinds.get('data', 0)} data, {kinds.get('unit', 0)} unit): "
        f"{statuses or 'none ran'}. Reconciliation: {', '.join(reconciled)}."
    )


def raise_on_failures(tests: pd.DataFrame, recon: pd.DataFrame) -> None:
    """Raise :class:`QualityCheckFailed` if an error-severity test failed (or could not run),
    a month does not reconcile, or no test ran at all; warn-severity failures pass."""
    blocking = tests[blocks_the_pipeline(tests)]
    mismatched = recon[recon["status"] == "mismatch"]
    if blocking.empty and mismatched.empty and not tests.empty:
        return
    lines = []
    if tests.empty:
        lines.append("No dbt test ran: the checks cannot vouch for the marts.")
    if not blocking.empty:
        lines.append(f"{len(blocking)} error-severity test(s) failed:")
        lines += [f"  - {_describe_test(t)}" for t in blocking.to_dict("records")]
    if not mismatched.empty:
        lines.append(
            f"{len(mismatched)} month(s) do not reconcile "
            "(fact rows vs the latest delivery minus quarantined rows):"
        )
        lines += [
            f"  - {r['month']}: the fact holds {r['fact_rows']:,} rows, expected {r['expected']:,}"
            f" ({r['raw_rows']:,} delivered - {r['quarantined']:,} quarantined), "
            f"difference {r['difference']:+,}"
            for r in mismatched.to_dict("records")
        ]
    lines.append(
        "What to do: to see the rows a test found, run `../.venv/bin/dbt test --select <name> "
        "--store-failures` in dbt_resale_flat/ (with HDB_WAREHOUSE_PATH set to this "
        "warehouse); they land in the warehouse's schema dbt_test__audit. Fix the data or the "
        "model, rebuild the months (the 03 notebook with start_month/end_month), test again."
    )
    raise QualityCheckFailed(
        "Quality checks failed.\n" + "\n".join(lines),
        tests=blocking["name"].tolist(),
        months=mismatched["month"].tolist(),
    )


def _describe_test(test: dict) -> str:
    target = test["model"] + (f".{test['column']}" if test["column"] else "")
    found = test["failures"]
    rows = "" if pd.isna(found) or test["status"] == ERRORED else f", {found:,} failing row(s)"
    if test["kind"] == "unit":
        kind = "unit test"
    else:  # a generic test by its name (unique, accepted_range...), else a singular test
        kind = test["test"] if test["test"] != test["name"] else "singular test"
    return f"{test['name']} ({kind} on {target}): {test['status']}{rows}"
