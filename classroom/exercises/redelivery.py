"""Exercise 04 · Re-deliver a revised month: what the incremental model does, raw vs marts.

data.gov.sg re-publishes February 2023, revised: some sales withdrawn, one price corrected,
some late registrations added. The learner runs it through extract-load, the gate and a plain
``dbt build``, then finds out with queries what happened in raw (append-only: both deliveries
are there) and in the fact (incremental by month: February deleted and inserted again from its
latest delivery, January untouched), and explains it in their own words.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable

import pandas as pd

from classroom.exercises.workspace import EXERCISES, CheckResult, Workspace
from hdb_elt.warehouse import LATEST_DELIVERIES, query_df

EXERCISE = EXERCISES["04_redeliver_a_month"]
MONTH = "2023-02"
FILE = f"resale-flat-prices-{MONTH}.csv"
LATE_FROM = "resale-flat-prices-2023-01.csv"
# CSV lines (the header is line 1) of the first delivery that the revision withdraws, the line
# whose price it corrects, and how many late registrations it adds.
WITHDRAWN = tuple(50 + 150 * i for i in range(12))
CORRECTED_LINE = 1000
CORRECTION = 10_000
LATE_SALES = 5
MIN_EXPLANATION_WORDS = 15
FACT = "marts.fct_resale_transactions"
RAW = "raw.resale_flat_prices"


def deliver_revised_february(ws: Workspace) -> str:
    """Replace February's delivery file in the workspace with the revised one; describe it."""
    first = _read(ws.checkpoint.deliveries_dir / FILE)
    header, rows = first[0], first[1:]
    price = header.index("resale_price")
    revised = []
    for line, row in enumerate(rows, start=2):
        if line in WITHDRAWN:
            continue
        if line == CORRECTED_LINE:
            row = [*row[:price], str(int(float(row[price])) + CORRECTION), *row[price + 1 :]]
        revised.append(row)
    month = header.index("month")
    late = _read(ws.checkpoint.deliveries_dir / LATE_FROM)[1 : LATE_SALES + 1]
    revised += [[*row[:month], MONTH, *row[month + 1 :]] for row in late]
    with (ws.deliveries_dir / FILE).open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows([header, *revised])
    return (
        f"A revised delivery of {MONTH} is in the workspace's deliveries: {len(revised):,} rows "
        f"(the first delivery had {len(rows):,})."
    )


def _read(path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return list(csv.reader(handle))


def deliveries_by_month(ws: Workspace) -> pd.DataFrame:
    """Per month and delivery (1 = the first): rows in raw, and how many of them the fact holds.

    Load ids and times differ from run to run, so deliveries are numbered instead."""
    return ws.query(
        f"""
        with raw as (
            select month, _load_id, count(*) as raw_rows, min(_loaded_at) as loaded_at
            from {RAW} group by all
        ),
        fact as (
            select month_key as month, _load_id, count(*) as fact_rows from {FACT} group by all
        )
        select raw.month,
            row_number() over (partition by raw.month order by raw.loaded_at) as delivery,
            raw.raw_rows,
            coalesce(fact.fact_rows, 0) as fact_rows
        from raw left join fact using (month, _load_id)
        order by raw.month, delivery
        """
    )


# --- the self-check ----------------------------------------------------------------------------


def _fact_ids(warehouse) -> set[str]:
    frame = query_df(warehouse, f"select transaction_id from {FACT} where month_key = ?", [MONTH])
    return set(frame["transaction_id"])


def _fact_loads(warehouse) -> pd.DataFrame:
    return query_df(warehouse, f"select distinct month_key, _load_id from {FACT}")


def _truth(ws: Workspace) -> dict:
    """What really happened, read from the workspace and from the checkpoint it started from."""
    before, after = _fact_ids(ws.checkpoint.warehouse_path), _fact_ids(ws.warehouse_path)
    loads = _fact_loads(ws.warehouse_path).merge(
        _fact_loads(ws.checkpoint.warehouse_path), how="left", indicator=True
    )
    raw = ws.query(
        f"select count(*) as n, count(distinct _load_id) as deliveries from {RAW} where month = ?",
        [MONTH],
    )
    latest = ws.query(
        f"select distinct _load_id from {LATEST_DELIVERIES} where month = ?", [MONTH]
    )["_load_id"].iloc[0]
    built = set(loads.loc[loads["month_key"] == MONTH, "_load_id"]) == {latest}
    return {
        "deliveries": int(raw["deliveries"].iloc[0]),
        "built": built,
        "raw_rows_february": int(raw["n"].iloc[0]),
        "fact_rows_february": len(after),
        "months_rebuilt": sorted(set(loads.loc[loads["_merge"] == "left_only", "month_key"])),
        "ids_removed": len(before - after),
        "ids_added": len(after - before),
    }


QUESTIONS = {
    "raw_rows_february": (
        "rows of 2023-02 in raw",
        "raw is append-only: count every delivery of February, the first and the revised one.",
    ),
    "fact_rows_february": (
        "rows of 2023-02 in the fact",
        "the fact holds only the latest delivery of a month (minus quarantined rows).",
    ),
    "months_rebuilt": (
        "the months dbt rebuilt",
        "compare the fact's _load_id per month with the raw deliveries: which month now comes "
        "from a new delivery? A list of months, such as ['2023-01'].",
    ),
    "ids_removed": (
        "transaction ids of February gone from the fact",
        "compare ids_before with the ids in the fact now. A corrected price changes a row's "
        "values, so its transaction_id changes too.",
    ),
    "ids_added": (
        "transaction ids of February new in the fact",
        "the ids in the fact now that are not in ids_before: late sales and corrected rows.",
    ),
}


def check_redelivery(
    ws: Workspace,
    *,
    raw_rows_february: object,
    fact_rows_february: object,
    months_rebuilt: object,
    ids_removed: object,
    ids_added: object,
    explanation: object,
) -> CheckResult:
    """Are the learner's answers what happened in the workspace, and is there an explanation?"""
    result = CheckResult(EXERCISE)
    truth = _truth(ws)
    if truth["deliveries"] < 2:
        result.miss(
            "the revised February is not in raw yet: run the cells of step 2 first.",
            "run the notebook from the top: each step needs the ones before it.",
        )
        return result
    if not truth["built"]:
        result.miss(
            "the fact does not hold the revised February yet: run the dbt build of step 3.",
            "run the notebook from the top: each step needs the ones before it.",
        )
        return result
    answers = {
        "raw_rows_february": raw_rows_february,
        "fact_rows_february": fact_rows_february,
        "months_rebuilt": months_rebuilt,
        "ids_removed": ids_removed,
        "ids_added": ids_added,
    }
    for name, answer in answers.items():
        what, hint = QUESTIONS[name]
        if answer is None:
            result.miss(f"{name} is still None ({what}).", hint)
        elif _same(answer, truth[name]):
            result.ok(f"{name} = {_show(truth[name])}: right.")
        else:
            result.miss(f"{name} = {_show(answer)} is not right ({what}).", hint)
    words = len(str(explanation).split()) if isinstance(explanation, str) else 0
    if words >= MIN_EXPLANATION_WORDS:
        result.ok(f"you explained what happened ({words} words; your instructor reads them).")
    else:
        result.miss(
            "explanation needs two or three sentences of your own "
            f"(at least {MIN_EXPLANATION_WORDS} words).",
            "say what raw keeps and why, which months dbt deleted and inserted again and how "
            "it chose them, and why the fact's row count is not raw's.",
        )
    return result


def _same(answer: object, truth: object) -> bool:
    if isinstance(truth, list):
        if isinstance(answer, str) or not isinstance(answer, Iterable):
            return False
        return sorted(str(a) for a in answer) == truth
    try:
        return int(answer) == truth  # numpy and pandas integers too
    except (TypeError, ValueError):
        return False


def _show(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else repr(value)
