"""Exercise 07 · Absorb a new spelling: drift belongs in staging, raw keeps what was delivered.

data.gov.sg re-delivers February 2023 with the flat model ``New Generation`` written
``New-Generation``: the same flats, a new spelling (the five resources since 1990 drift the
same way: ``MULTI GENERATION`` and ``MULTI-GENERATION``, ``NEW GENERATION`` and ``New
Generation``). Case is matched by rule; this is more than case, so the pipeline keeps it as a
new model: the fact holds a flat model no one sells, and dbt's relationships test warns. The
learner adds one line to the seed ``flat_model_spellings.csv`` of the workspace's copy of the
dbt project, which staging and the gate both read, and rebuilds February. The self-check wants
raw as delivered, the gate passing, the fact as before the re-delivery (same models, counts
and transaction ids) and every dbt test passing.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd

from classroom.exercises.workspace import EXERCISES, CheckResult, Workspace
from hdb_elt.normalisation import harmonise_flat_model
from hdb_elt.settings import DBT_PROJECT_DIR, temporary_environ
from hdb_elt.validation import read_deliveries, validate_load
from hdb_elt.warehouse import LATEST_DELIVERIES, query_df

EXERCISE = EXERCISES["07_absorb_a_new_spelling"]
MONTH = "2023-02"
FILE = f"resale-flat-prices-{MONTH}.csv"
MODEL = "New Generation"  # the known model, in today's spelling
SPELLING = "New-Generation"  # how the re-delivery writes it
SEED = "seeds/flat_model_spellings.csv"
MODELS_SEED = "seeds/flat_models.csv"
FACT = "marts.fct_resale_transactions"
RAW = "raw.resale_flat_prices"
REBUILD_FEBRUARY = ["build", "--vars", json.dumps({"start_month": MONTH, "end_month": MONTH})]


def deliver_respelled_february(ws: Workspace) -> str:
    """Replace February's delivery in the workspace with the re-delivery; describe it."""
    with (ws.checkpoint.deliveries_dir / FILE).open(newline="", encoding="utf-8-sig") as handle:
        header, *rows = list(csv.reader(handle))
    model = header.index("flat_model")
    respelled = [[*r[:model], SPELLING, *r[model + 1 :]] if r[model] == MODEL else r for r in rows]
    with (ws.deliveries_dir / FILE).open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows([header, *respelled])
    changed = sum(r[model] == MODEL for r in rows)
    return (
        f"February {MONTH} is delivered again: {len(rows):,} rows, the same sales, but "
        f"{changed:,} of them write the flat model {SPELLING!r} where the first delivery "
        f"wrote {MODEL!r}."
    )


def todays_models(project: Path = DBT_PROJECT_DIR) -> list[str]:
    """The flat models in today's spelling, as a project's seeds/flat_models.csv lists them."""
    return _column(project / MODELS_SEED, "flat_model")


def _column(path: Path, column: str) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [row[column] for row in csv.DictReader(handle)]


def flat_models_in_fact(ws: Workspace) -> pd.DataFrame:
    """Rows per flat model and month in the fact, and whether the model is one of today's."""
    counts = ws.query(
        f"select flat_model, month_key, count(*) as n from {FACT} group by all"
    ).pivot_table(index="flat_model", columns="month_key", values="n", fill_value=0)
    counts = counts.astype(int)
    counts.columns.name = None
    known = set(todays_models())
    return counts.assign(todays_model=[m in known for m in counts.index]).reset_index()


def spelling_seed(ws: Workspace) -> str:
    """The workspace's seeds/flat_model_spellings.csv, as text."""
    return (ws.dbt_project_dir / SEED).read_text()


def add_spelling(ws: Workspace, line: str | None) -> None:
    """Add ``line`` (``spelling,flat_model``) to the workspace's flat_model_spellings.csv."""
    if line is None:
        print("new_spelling is still None: nothing written yet.")
        return
    if not isinstance(line, str):
        raise TypeError(f"new_spelling must be a string (text), not a {type(line).__name__}.")
    path = ws.dbt_project_dir / SEED
    text = path.read_text()
    added = [x.strip() for x in line.strip().splitlines() if x.strip()]
    path.write_text(text.rstrip("\n") + "\n" + "\n".join(added) + "\n")
    print(f"Added to {SEED}: " + "; ".join(added))


def the_gate_reads(ws: Workspace) -> pd.DataFrame:
    """The flat models of February's latest delivery that are not today's spelling as raw
    holds them: how the gate (and staging) reads them, with their rows. The gate reads the
    workspace's seeds."""
    raw = ws.query(
        f"select flat_model as delivered, count(*) as rows from {LATEST_DELIVERIES} "
        "where month = ? group by all order by delivered",
        [MONTH],
    )
    with temporary_environ(ws.env()):
        read = harmonise_flat_model(raw["delivered"].fillna(""))
    known = set(todays_models())
    read = raw.assign(the_gate_reads=read, todays_model=read.isin(known))
    drift = read[(read["delivered"] != read["the_gate_reads"]) | ~read["todays_model"]]
    return drift[["delivered", "the_gate_reads", "todays_model", "rows"]].reset_index(drop=True)


# --- the self-check ----------------------------------------------------------------------------


def _by_model(warehouse: Path) -> dict[tuple[str, str], int]:
    frame = query_df(
        warehouse, f"select month_key, flat_model, count(*) as n from {FACT} group by all"
    )
    return {(r.month_key, r.flat_model): int(r.n) for r in frame.itertuples()}


def _ids(warehouse: Path) -> set[str]:
    frame = query_df(warehouse, f"select transaction_id from {FACT} where month_key = ?", [MONTH])
    return set(frame["transaction_id"])


def check_new_spelling(ws: Workspace, new_spelling: object) -> CheckResult:
    """Does the pipeline absorb the new spelling in staging, with raw as delivered, the gate
    passing, the fact as before the re-delivery and every dbt test passing?"""
    result = CheckResult(EXERCISE)
    if new_spelling is None:
        result.miss(
            f"new_spelling is still None: {SEED} has no line for {SPELLING!r} yet (step 3).",
            "one line in the seed's format (its header says it): the spelling as delivered, a "
            "comma, and the flat model it means, spelled as in seeds/flat_models.csv.",
        )
        return result
    if not _raw_as_delivered(ws, result) or not _seeds_in_place(ws, result):
        return result
    if not _gate_passes(ws, result) or not _fact_as_before(ws, result):
        return result
    _dbt_tests_pass(ws, result)
    return result


def _raw_as_delivered(ws: Workspace, result: CheckResult) -> bool:
    deliveries = ws.query(
        f"select count(distinct _load_id) as n from {RAW} where month = ?", [MONTH]
    )["n"].iloc[0]
    if deliveries < 2:
        result.miss(
            f"the re-delivered {MONTH} is not in raw yet: run the cells of step 2 first.",
            "run the notebook from the top: each step needs the ones before it.",
        )
        return False
    with (ws.checkpoint.deliveries_dir / FILE).open(newline="", encoding="utf-8-sig") as handle:
        delivered = sum(row["flat_model"] == MODEL for row in csv.DictReader(handle))
    held = ws.query(
        f"select count(*) as n from {LATEST_DELIVERIES} where month = ? and flat_model = ?",
        [MONTH, SPELLING],
    )["n"].iloc[0]
    if held != delivered:
        result.miss(
            f"raw's latest delivery of {MONTH} holds {held:,} rows written {SPELLING!r}, but "
            f"{delivered:,} were delivered so: the delivery was changed before it reached raw.",
            "raw keeps every row as delivered, drift included: leave the delivery file and raw "
            "alone (start over at step 1) and absorb the spelling in the seed staging reads.",
        )
        return False
    result.ok(f"raw holds the {held:,} rows of {MONTH} as delivered, written {SPELLING!r}.")
    return True


def _seeds_in_place(ws: Workspace, result: CheckResult) -> bool:
    mine, project = todays_models(ws.dbt_project_dir), todays_models()
    if mine != project:
        added = sorted(set(mine) - set(project))
        removed = sorted(set(project) - set(mine))
        changes = (
            "; ".join([*(f"{m!r} added" for m in added), *(f"{m!r} removed" for m in removed)])
            or "its order changed"
        )
        result.miss(
            f"{MODELS_SEED} lists today's spelling of each flat model, one line per model; "
            f"yours changed ({changes}).",
            f"{SPELLING!r} is not a new model but a new spelling of one: put it in "
            f"{SEED} and leave {MODELS_SEED} as it was.",
        )
        return False
    with (ws.dbt_project_dir / SEED).open(newline="", encoding="utf-8") as handle:
        lines = [
            (row.get("spelling") or "", row.get("flat_model") or "")
            for row in csv.DictReader(handle)
        ]
    if not any(" ".join(s.split()).upper() == SPELLING.upper() for s, _ in lines):
        shown = ", ".join(f"{s!r} -> {m!r}" for s, m in lines) or "no line"
        result.miss(
            f"{SEED} has no line for {SPELLING!r} (it holds: {shown}).",
            "the first column is the spelling exactly as raw holds it (case and spaces aside).",
        )
        return False
    strangers = [(s, m) for s, m in lines if m not in project]
    if strangers:
        shown = ", ".join(f"{s!r} -> {m!r}" for s, m in strangers)
        result.miss(
            f"{SEED} maps a spelling to a model that is not one of {MODELS_SEED}: {shown}.",
            f"the second column is a flat model exactly as {MODELS_SEED} spells it.",
        )
        return False
    result.ok(f"{SEED} has a line for {SPELLING!r}; {MODELS_SEED} is as it was.")
    return True


def _gate_passes(ws: Workspace, result: CheckResult) -> bool:
    with temporary_environ(ws.env()):  # the gate reads the workspace's seeds
        start, end = str(ws.settings.start_month), str(ws.settings.end_month)
        rows = read_deliveries(ws.warehouse_path, start, end)
        report = validate_load(rows, start, end)
    if report.blocked or report.quarantined_rows:
        failures = report.blocking_failures[:1] or [report.summary()]
        result.miss(
            f"the gate does not pass the deliveries: {failures[0]}",
            "the gate reads the same seeds as staging: a line that staging accepts passes it.",
        )
        return False
    result.ok(f"the gate passes all {report.rows_checked:,} rows, the re-delivery included.")
    return True


def _fact_as_before(ws: Workspace, result: CheckResult) -> bool:
    loads = ws.query(f"select distinct _load_id from {FACT} where month_key = ?", [MONTH])
    latest = ws.query(f"select distinct _load_id from {LATEST_DELIVERIES} where month = ?", [MONTH])
    if set(loads["_load_id"]) != set(latest["_load_id"]):
        result.miss(
            f"the fact does not hold the re-delivered {MONTH} yet: run the builds of step 2 "
            "and step 4.",
            "run the notebook from the top: each step needs the ones before it.",
        )
        return False
    before, now = _by_model(ws.checkpoint.warehouse_path), _by_model(ws.warehouse_path)
    known = set(todays_models())
    unknown = {key: n for key, n in now.items() if key[1] not in known}
    if unknown:
        shown = "; ".join(f"{n:,} rows of {m} under {f!r}" for (m, f), n in sorted(unknown.items()))
        result.miss(
            f"the fact holds flat models that are not today's ({MODELS_SEED}): {shown}.",
            f"staging gives a row today's spelling only for the spellings the seeds know: add "
            f"the line to {SEED}, then rebuild {MONTH} (step 4).",
        )
        return False
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k, 0) != now.get(k, 0))
    if changed:
        shown = "; ".join(
            f"{f!r} in {m}: {now.get((m, f), 0):,} rows, {before.get((m, f), 0):,} before"
            for m, f in changed
        )
        result.miss(
            f"the fact's rows per flat model are not those of the first delivery: {shown}.",
            f"the re-delivery holds the same sales as the first: map {SPELLING!r} to the model "
            "its rows are (read the first delivery's counts in step 2), and map nothing else.",
        )
        return False
    result.ok(
        "the fact holds every flat model in today's spelling, with as many rows per month "
        "and model as before the re-delivery."
    )
    if _ids(ws.warehouse_path) != _ids(ws.checkpoint.warehouse_path):
        result.miss(
            f"the transaction ids of {MONTH} differ from the first delivery's.",
            "the ids are made from the harmonised values: rebuild the month once the seed is "
            "right.",
        )
        return False
    result.ok(f"the transaction ids of {MONTH} are the first delivery's: the same sales.")
    return True


def _dbt_tests_pass(ws: Workspace, result: CheckResult) -> None:
    run = ws.run_dbt(["test"])
    table = run.table()
    bad = table[~table["status"].isin(["pass", "success"])]
    if not run.ok or table.empty or not bad.empty:
        detail = "; ".join(f"{r.name}: {r.status}" for r in bad.itertuples()) or run.error_lines()
        result.miss(
            f"not every dbt test passes: {detail}.",
            "a warning is not a pass: the relationships test from the fact to flat_models "
            "warns while a model is not one of today's.",
        )
        return
    result.ok(f"every dbt test passes ({len(table)}), unit tests and warnings included.")
