"""Exercise 01 · Add a validation rule: a delivery the gate lets through, until you add a rule.

The bad delivery is a re-published February whose export swapped two columns' values: every
``block`` holds a street name and every ``street_name`` a block number. The tap accepts it (the
columns are all there, prices and areas are numbers) and so do the built-in rules. The learner
writes a :class:`~hdb_elt.validation.Rule` (the built-in ones are in
``hdb_elt/validation/rules.py``), adds it to the gate with
``validate_load(..., extra_rules=[new_rule])``, and watches the gate stop the delivery.
"""

from __future__ import annotations

import csv
import traceback

import pandas as pd

from classroom.exercises.workspace import EXERCISES, CheckResult, Workspace
from hdb_elt.validation import (
    RULES,
    THRESHOLD_RULE,
    Rule,
    ValidationBlocked,
    Window,
    raise_if_blocked,
    read_deliveries,
    validate_load,
)
from hdb_elt.warehouse import SOURCE_COLUMNS

EXERCISE = EXERCISES["01_add_a_validation_rule"]
BAD_MONTH = "2023-02"
BAD_FILE = f"resale-flat-prices-{BAD_MONTH}.csv"
SWAPPED = ("block", "street_name")
STOPPING_SEVERITIES = ("blocking", "quarantine")
# The columns of the "typed" frame a rule may check instead of the text (see Rule.frame).
TYPED_COLUMNS = {"month", "registration_year", "floor_area_sqm", "resale_price",
                 "lease_commence_date"}  # fmt: skip


def deliver_bad_february(ws: Workspace) -> str:
    """Replace February's delivery file in the workspace with the broken re-publication.

    Returns a one-line description. The file keeps its name, as data.gov.sg's does: the tap
    notices that its content changed and extracts it again.
    """
    path = ws.deliveries_dir / BAD_FILE
    rows = _read_csv(ws.checkpoint.deliveries_dir / BAD_FILE)
    for row in rows:
        row[SWAPPED[0]], row[SWAPPED[1]] = row[SWAPPED[1]], row[SWAPPED[0]]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return f"A new delivery of {BAD_MONTH} is in the workspace's deliveries: {len(rows):,} rows."


def _read_csv(path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def bad_rows(ws: Workspace) -> pd.DataFrame:
    """The bad delivery as raw rows (text, with where each came from), read from its file, so
    the check does not depend on what the notebook has loaded."""
    rows = pd.DataFrame(_read_csv(ws.checkpoint.deliveries_dir / BAD_FILE))
    rows[list(SWAPPED)] = rows[list(reversed(SWAPPED))].to_numpy()
    rows = rows[list(SOURCE_COLUMNS)]
    rows["_source"] = BAD_FILE
    rows["_source_row"] = range(2, len(rows) + 2)
    rows["_load_id"] = "bad-delivery"
    return rows


def good_rows(ws: Workspace) -> pd.DataFrame:
    """The reference deliveries of the window, as the checkpoint loaded them."""
    window = ws.checkpoint
    return read_deliveries(window.warehouse_path, window.start_month, window.end_month)


def gate_verdict(report) -> str:
    """What the gate says about a report: its message if blocked, else that it is open."""
    try:
        raise_if_blocked(report)
    except ValidationBlocked as blocked:
        return str(blocked)
    return "The gate is open: these deliveries would go on to transform."


# --- the self-check ----------------------------------------------------------------------------


def check_validation_rule(ws: Workspace, new_rule: object) -> CheckResult:
    """Is ``new_rule`` a rule that passes the good deliveries and stops the bad one?"""
    result = CheckResult(EXERCISE)
    if new_rule is None:
        result.miss(
            "new_rule is still None: write your Rule in the TODO cell of step 3.",
            "start from a copy of the flat_type_known rule shown in step 3 and change what it "
            "checks: which column is wrong in the bad delivery, and what should it look like?",
        )
        return result
    if not isinstance(new_rule, Rule):
        result.miss(
            f"new_rule is a {type(new_rule).__name__}, not a Rule: build it with "
            "Rule(name, severity, description, columns, schema, phrase).",
            "the example in step 3 shows the six arguments of a Rule.",
        )
        return result
    taken = {rule.name for rule in RULES} | {THRESHOLD_RULE}
    if new_rule.name in taken:
        result.miss(
            f"the name {new_rule.name!r} is taken by a built-in rule: give yours its own name.",
            "a name says what the rule checks, such as 'block_format'.",
        )
        return result
    if new_rule.severity not in STOPPING_SEVERITIES:
        result.miss(
            f"its severity is {new_rule.severity!r}, which only reports: the gate can stop a "
            "delivery only with a 'blocking' rule, or a 'quarantine' rule failing more than "
            "1% of a month's rows.",
            "a column that holds the wrong values in every row is a broken delivery: 'blocking'.",
        )
        return result
    result.ok(f"new_rule is a Rule named {new_rule.name!r} with severity {new_rule.severity!r}.")

    good = good_rows(ws)
    unknown = _unknown_columns(new_rule, ws, good)
    if unknown:
        result.miss(
            f"its schema checks column(s) {', '.join(map(repr, unknown))}, which the rows do "
            "not have, so it can find nothing.",
            "the raw columns are: " + ", ".join(SOURCE_COLUMNS) + ".",
        )
        return result

    good_report, error = _validate(good, ws, new_rule)
    if error:
        result.miss(f"checking the good deliveries, your rule raised {error}", _error_hint(error))
        return result
    good_failing = _failing(good_report, new_rule)
    if good_failing:
        example = good_report.failures[good_report.failures["rule"] == new_rule.name].iloc[0]
        result.miss(
            f"it fails {good_failing:,} row(s) of the good deliveries of "
            f"{ws.checkpoint.start_month}..{ws.checkpoint.end_month}, which are real sales: "
            f"for example line {example['_source_row']} of {example['_source'].split('/')[-1]}"
            f" ({example['detail']}).",
            "real blocks are one to four digits with at most one letter after them, such as "
            "'308B': look at the failing values and widen the rule to allow them.",
        )
        return result
    result.ok(f"it passes all {len(good):,} rows of the good deliveries (no false alarm).")

    bad = bad_rows(ws)
    bad_report, error = _validate(bad, ws, new_rule)
    if error:
        result.miss(f"checking the bad delivery, your rule raised {error}", _error_hint(error))
        return result
    bad_failing = _failing(bad_report, new_rule)
    if not bad_report.blocked or bad_failing == 0:
        result.miss(
            f"the gate still lets the bad {BAD_MONTH} through: your rule finds "
            f"{bad_failing:,} failing row(s) in it.",
            "look at the block column in the sample of step 2: what does a block number look "
            "like, and what is in that column now?",
        )
        return result
    how = (
        "your rule blocks it"
        if new_rule.severity == "blocking"
        else f"your rule quarantines {bad_failing:,} rows, over the threshold"
    )
    result.ok(
        f"the gate stops the bad {BAD_MONTH} ({how}): {bad_failing:,} of {len(bad):,} rows fail."
    )
    return result


def _failing(report, rule: Rule) -> int:
    results = report.results.set_index("rule")
    return int(results.loc[rule.name, "failing_rows"]) if rule.name in results.index else 0


def _validate(rows: pd.DataFrame, ws: Workspace, rule: Rule):
    try:
        report = validate_load(
            rows, ws.settings.start_month, ws.settings.end_month, extra_rules=[rule]
        )
    except Exception as exc:  # the learner's code: show what it raised, never a traceback
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return None, f"{type(exc).__name__}: {exc} (in {where.name})"
    return report, None


def _unknown_columns(rule: Rule, ws: Workspace, rows: pd.DataFrame) -> list[str]:
    try:
        schema = rule.schema(_window(ws))
    except Exception:
        return []  # reported when the rule runs
    known = TYPED_COLUMNS if rule.frame == "typed" else set(rows.columns)
    return [column for column in getattr(schema, "columns", {}) if column not in known]


def _window(ws: Workspace) -> Window:
    return Window(ws.settings.start_month, ws.settings.end_month)


def _error_hint(error: str) -> str:
    if "positional argument" in error:
        return (
            "phrase is called with four values, (column, value, row, window): write it as "
            "lambda column, value, row, window: f'{value!r} is not ...'."
        )
    return (
        "schema must be a function of the window returning a pandera DataFrameSchema, as in "
        "the example: lambda _window: pa.DataFrameSchema({...})."
    )
