"""The gate's engine: pandera checks raw rows against the rules, and this module maps each
failure case back to its raw row (``_source``, ``_source_row``), its rule and a sentence.

:func:`validate_load` is pure (no I/O), so a notebook can show each step: it returns a
:class:`ValidationReport` with one result row per rule, the quarantined rows, every failing
row, and the rows and quarantined rows of each (load, month), the unit the quarantine
threshold and the audit tables use.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pandera.errors import SchemaErrors

from hdb_elt.months import Month
from hdb_elt.normalisation import normalise
from hdb_elt.validation.locations import basename, row_location
from hdb_elt.validation.rules import (
    DEFAULT_MAX_QUARANTINE_FRACTION,
    MONTH_PATTERN,
    NUMBER_PATTERN,
    REQUIRED_COLUMNS,
    RULES,
    THRESHOLD_RULE,
    YEAR_PATTERN,
    Rule,
    Window,
    all_rules,
)
from hdb_elt.warehouse import SOURCE_COLUMNS

RESULT_COLUMNS = ["rule", "severity", "status", "failing_rows", "checked_rows", "sample"]
QUARANTINE_COLUMNS = ["_load_id", "_source", "_source_row", "month", "rule", "detail"]
FAILURE_COLUMNS = [*QUARANTINE_COLUMNS[:4], "rule", "severity", "column", "value", "detail"]
# Failing rows shown per rule in audit.validation_results' sample.
SAMPLE_SIZE = 3


@dataclass(frozen=True)
class Failure:
    """One blocking failure: a raw row (or the whole delivery) and what is wrong with it."""

    rule: str
    column: str | None
    phrase: str
    source: str | None = None
    source_row: int | None = None

    def __str__(self) -> str:
        where = row_location(self.source, self.source_row)
        column = f"column {self.column}: " if self.column else ""
        location = f"{where}, {column}" if where else column
        return f"{location}{self.phrase} (rule {self.rule}, blocking)."


@dataclass(repr=False)
class ValidationReport:
    """What the gate found in one set of raw rows.

    ``results`` has one row per rule; ``quarantined`` one row per failing row per row-level
    rule (``_source`` exactly as in raw, so staging can leave those rows out);
    ``failures`` every failing row of every rule; ``partitions`` the rows and quarantined
    rows of each (load, month), the unit the quarantine threshold and the audit tables use.
    """

    load_ids: tuple[str, ...]
    start_month: Month
    end_month: Month
    rows_checked: int
    max_quarantine_fraction: float
    results: pd.DataFrame
    quarantined: pd.DataFrame
    blocking_failures: list[Failure]
    failures: pd.DataFrame = field(default_factory=pd.DataFrame)
    partitions: pd.DataFrame = field(default_factory=pd.DataFrame)
    missing_columns: tuple[str, ...] = ()
    # The rules checked: RULES plus any extra ones (see validate_load's extra_rules).
    rules: tuple[Rule, ...] = field(default_factory=lambda: RULES)

    @property
    def load_id(self) -> str:
        """The load validated, or the loads joined with ", " when the rows span several."""
        return ", ".join(self.load_ids)

    @property
    def blocked(self) -> bool:
        return bool(self.blocking_failures)

    @property
    def quarantined_rows(self) -> int:
        """Distinct raw rows failing at least one row-level rule."""
        return len(self.quarantined.drop_duplicates(["_load_id", "_source", "_source_row"]))

    def summary(self) -> str:
        """One deterministic line: rows, quarantined, warnings, and whether the gate blocks."""
        warned = int((self.results["status"] == "warn").sum())
        return (
            f"{self.rows_checked:,} rows checked ({self.start_month}..{self.end_month}): "
            f"{self.quarantined_rows:,} quarantined, {warned} warning(s), "
            + (
                f"BLOCKED by {len(self.blocking_failures):,} failure(s)"
                if self.blocked
                else "passed"
            )
        )

    def __repr__(self) -> str:
        return f"ValidationReport({self.summary()})"


def quarantined_sample(report: ValidationReport, rows: int = 10) -> pd.DataFrame:
    """The first quarantined rows as a person reads them: file, line, rule and why."""
    columns = ["file", "line", "month", "rule", "detail"]
    if report.quarantined.empty:
        return pd.DataFrame(columns=columns)
    frame = report.quarantined.assign(
        file=report.quarantined["_source"].map(lambda s: Path(str(s)).name),
        line=report.quarantined["_source_row"],
    )
    return frame.sort_values(["file", "line", "rule"])[columns].head(rows).reset_index(drop=True)


# --- validating ----------------------------------------------------------------------------


def _text_frame(rows: pd.DataFrame) -> pd.DataFrame:
    text = pd.DataFrame(index=pd.RangeIndex(len(rows)))
    for column in REQUIRED_COLUMNS:
        if column == "_source_row":
            text[column] = pd.to_numeric(rows[column], errors="coerce").to_numpy()
        else:
            text[column] = rows[column].astype("string").fillna("").to_numpy()
    return text


def _typed_frame(text: pd.DataFrame, window: Window) -> pd.DataFrame:
    def number(column: str, pattern: str) -> pd.Series:
        values = text[column].where(text[column].str.match(pattern))
        return pd.to_numeric(values, errors="coerce").astype("float64")

    month = text["month"].where(text["month"].str.match(MONTH_PATTERN))
    year = pd.to_numeric(month.str.slice(0, 4), errors="coerce").astype("float64")
    # Identical twins within a delivery and month: the share of rows that have one, per
    # (load, month), and whether a row repeats an earlier one.
    twins = [*SOURCE_COLUMNS, "_load_id"]
    has_twin = text.duplicated(twins, keep=False)
    share = has_twin.groupby([text["_load_id"], text["month"]], sort=False).transform("mean")
    return pd.DataFrame(
        {
            "month": month,
            "registration_year": year.fillna(window.end.year),
            "floor_area_sqm": number("floor_area_sqm", NUMBER_PATTERN),
            "resale_price": number("resale_price", NUMBER_PATTERN),
            "lease_commence_date": number("lease_commence_date", YEAR_PATTERN),
            "repeats_earlier": text.duplicated(twins, keep="first").to_numpy(),
            "twin_share": share.to_numpy(dtype="float64"),
        }
    )


def _missing_columns(rows: pd.DataFrame, window: Window) -> list[str]:
    """The required columns pandera finds missing, in the order of the raw table."""
    try:
        RULES[0].schema(window).validate(rows.head(0), lazy=True)
    except SchemaErrors as errors:
        cases = errors.failure_cases
        found = set(cases.loc[cases["check"] == "column_in_dataframe", "failure_case"])
        return [c for c in REQUIRED_COLUMNS if c in found]
    return []


def _failing_cells(rule: Rule, frame: pd.DataFrame, window: Window) -> pd.DataFrame:
    """(row position, column) of every failure pandera reports for ``rule``, first column first."""
    try:
        rule.schema(window).validate(frame, lazy=True, inplace=True)
    except SchemaErrors as errors:
        cases = errors.failure_cases
    else:
        return pd.DataFrame({"position": pd.Series(dtype="int64"), "column": pd.Series(dtype=str)})
    cases = cases[cases["index"].notna()]
    if rule.columns:
        # A frame-level check reports every column of a failing row: keep the rule's own.
        column = cases["column"].where(cases["column"].isin(rule.columns), rule.columns[0])
        order = column.map({c: i for i, c in enumerate(rule.columns)})
    else:
        column, order = pd.Series(None, index=cases.index, dtype=object), 0
    cells = pd.DataFrame(
        {"position": cases["index"].astype("int64").to_numpy(), "column": column, "order": order}
    )
    return cells.sort_values(["position", "order"]).drop_duplicates(["position", "column"])


def _rule_failures(
    rule: Rule,
    text: pd.DataFrame,
    typed: pd.DataFrame,
    window: Window,
    delivered: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """``rule``'s failures: checked on ``text`` (normalised) or ``typed``, reported with the
    values as ``delivered`` (default: ``text``)."""
    frame = typed if rule.frame == "typed" else text
    cells = _failing_cells(rule, frame, window)
    if cells.empty:
        return pd.DataFrame(columns=FAILURE_COLUMNS)
    delivered = text if delivered is None else delivered
    context = delivered.iloc[cells["position"].to_numpy()].reset_index(drop=True)
    for column in ("registration_year", "twin_share"):
        context[column] = typed[column].iloc[cells["position"]].to_numpy()
    if rule.name == "identical_rows":
        first = text.groupby([*SOURCE_COLUMNS, "_load_id"], sort=False, dropna=False)
        context["first_source"] = (
            first["_source"].transform("first").iloc[cells["position"]].to_numpy()
        )
        context["first_row"] = (
            first["_source_row"].transform("first").iloc[cells["position"]].to_numpy()
        )
    records = []
    for column, row in zip(cells["column"], context.to_dict("records"), strict=True):
        column = None if pd.isna(column) else column
        value = str(row[column]) if column else ""
        phrase = rule.phrase(column, value, row, window)
        records.append(
            {
                "_load_id": row["_load_id"],
                "_source": row["_source"],
                "_source_row": int(row["_source_row"]),
                "month": row["month"],
                "rule": rule.name,
                "severity": rule.severity,
                "column": column,
                "value": value,
                "detail": f"{column} {phrase}" if column else phrase,
            }
        )
    failures = pd.DataFrame.from_records(records, columns=FAILURE_COLUMNS)
    # One row per raw row per rule: several failing columns are joined in one detail.
    return (
        failures.groupby(["_load_id", "_source", "_source_row"], sort=False, as_index=False)
        .agg({**{c: "first" for c in FAILURE_COLUMNS[3:]}, "detail": "; ".join})
        .loc[:, FAILURE_COLUMNS]
    )


def _sample(failures: pd.DataFrame, size: int = SAMPLE_SIZE) -> str:
    """The first few failing rows (by file and line) as JSON, with file names, not paths."""
    ordered = failures.assign(file=failures["_source"].map(basename)).sort_values(
        ["file", "_source_row"], kind="stable"
    )
    items = []
    for row in ordered.head(size).to_dict("records"):
        item: dict[str, object] = {"file": row["file"], "line": int(row["_source_row"])}
        if row["column"]:
            item[row["column"]] = row["value"]
        else:
            item["detail"] = row["detail"]
        items.append(item)
    return json.dumps(items, ensure_ascii=False)


def _first_quarantined(failures: pd.DataFrame, load_id: str, month: str, size: int = 2) -> str:
    """`` (first: file line N, column: detail, rule R; ...)`` for a partition's quarantined
    rows, so a blocked month names the file, rows and rules to look at."""
    mine = failures[
        (failures["severity"] == "quarantine")
        & (failures["_load_id"] == load_id)
        & (failures["month"] == month)
    ]
    if mine.empty:
        return ""
    mine = mine.assign(file=mine["_source"].map(basename)).sort_values(
        ["file", "_source_row"], kind="stable"
    )
    shown = [
        f"{row_location(f['_source'], f['_source_row'])}: {f['detail']}, rule {f['rule']}"
        for f in mine.head(size).to_dict("records")
    ]
    return f" (first: {'; '.join(shown)}{'; ...' if len(mine) > size else ''})"


def status_of(severity: str, failing: int) -> str:
    """A rule's status from its severity and failing rows: info, pass, warn or fail."""
    if severity == "info":
        return "info"
    if failing == 0:
        return "pass"
    return "warn" if severity == "warning" else "fail"


def _partitions(text: pd.DataFrame, quarantined: pd.DataFrame, max_fraction: float) -> pd.DataFrame:
    """Rows and quarantined rows of each (load, month), and whether it is over the threshold."""
    keys = ["_load_id", "month"]
    sizes = text.groupby(keys, dropna=False).size().rename("rows")
    distinct = quarantined.drop_duplicates(["_load_id", "_source", "_source_row"])
    bad = distinct.groupby(keys, dropna=False).size().rename("quarantined_rows")
    parts = sizes.to_frame().join(bad).fillna(0).astype("int64").reset_index()
    parts["quarantined_fraction"] = parts["quarantined_rows"] / parts["rows"]
    parts["over_threshold"] = parts["quarantined_fraction"] > max_fraction
    return parts.sort_values(["month", "_load_id"]).reset_index(drop=True)


def summarise(
    failures: pd.DataFrame,
    parts: pd.DataFrame,
    max_fraction: float,
    missing: Sequence[str],
    rules: Sequence[Rule] = RULES,
) -> tuple[pd.DataFrame, list[Failure]]:
    """One result row per rule over ``parts`` (the whole report or one of its partitions),
    and a blocking failure for each partition over the quarantine threshold."""
    checked = int(parts["rows"].sum())
    rows = []
    for rule in rules:
        if missing:
            failing = checked if rule.name == "columns_present" else 0
            status = "fail" if rule.name == "columns_present" else "skipped"
            sample = json.dumps([{"column": c} for c in missing]) if failing else "[]"
        else:
            mine = failures[failures["rule"] == rule.name] if len(failures) else failures
            # No failures, no sample: skipping the sort keeps a window of hundreds of clean
            # months fast (record_results summarises every month).
            sample = _sample(mine) if len(mine) else "[]"
            failing, status = len(mine), status_of(rule.severity, len(mine))
        rows.append(
            (
                rule.name,
                rule.severity,
                status,
                failing,
                checked if status != "skipped" else 0,
                sample,
            )
        )

    over = parts[parts["over_threshold"]]
    blocking = [
        Failure(
            THRESHOLD_RULE,
            None,
            f"month {p['month']}: {p['quarantined_rows']:,} of {p['rows']:,} rows "
            f"({p['quarantined_fraction']:.1%}) failed row-level rules"
            f"{_first_quarantined(failures, p['_load_id'], p['month'])}, more than "
            f"max_quarantine_fraction {max_fraction:.1%}",
        )
        for p in over.to_dict("records")
    ]
    sample = [
        {"month": p["month"], "quarantined_rows": p["quarantined_rows"], "rows": p["rows"]}
        for p in over.head(SAMPLE_SIZE).to_dict("records")
    ]
    status = "skipped" if missing else ("fail" if blocking else "pass")
    quarantined = int(parts["quarantined_rows"].sum())
    rows.append(
        (
            THRESHOLD_RULE,
            "blocking",
            status,
            quarantined,
            0 if missing else checked,
            json.dumps(sample),
        )
    )
    results = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    return results.astype({"failing_rows": "int64", "checked_rows": "int64"}), blocking


def validate_load(
    rows: pd.DataFrame,
    start_month: str | Month,
    end_month: str | Month,
    *,
    max_quarantine_fraction: float = DEFAULT_MAX_QUARANTINE_FRACTION,
    extra_rules: Sequence[Rule] = (),
) -> ValidationReport:
    """Check raw rows against every rule; pure (no I/O), so a notebook can show each step.

    ``max_quarantine_fraction`` applies to each (load, month) of the rows, the unit the
    orchestrator validates, so a notebook validating the whole window reaches the same
    verdict as the per-month runs (and one bad month is not hidden by eleven good ones).
    ``extra_rules`` are checked after :data:`RULES`, exactly like them: a rule written in a
    notebook (the classroom exercise) joins the gate without editing rules.py.
    """
    if not 0 <= max_quarantine_fraction <= 1:
        raise ValueError(f"max_quarantine_fraction={max_quarantine_fraction!r}: expected 0 to 1.")
    rules = all_rules(extra_rules)
    window = Window(Month.parse(str(start_month)), Month.parse(str(end_month)))
    missing = _missing_columns(rows, window)
    text = _text_frame(rows.reindex(columns=list(REQUIRED_COLUMNS)))
    if missing:
        # Nothing else can be checked until the delivery has every column.
        failures = pd.DataFrame(columns=FAILURE_COLUMNS)
        blocking = [Failure("columns_present", c, "missing from the delivery") for c in missing]
    else:
        # Rules judge the values as staging will read them: normalised spellings pass.
        checked = normalise(text)
        typed = _typed_frame(checked, window)
        failures = pd.concat(
            [_rule_failures(rule, checked, typed, window, text) for rule in rules[1:]],
            ignore_index=True,
        )
        first_blocking = (
            failures[failures["severity"] == "blocking"]
            .assign(file=lambda d: d["_source"].map(basename))
            .sort_values(["file", "_source_row"], kind="stable")
        )
        blocking = [
            Failure(
                f["rule"],
                f["column"],
                f["detail"].removeprefix(f"{f['column']} "),
                f["_source"],
                int(f["_source_row"]),
            )
            for f in first_blocking.to_dict("records")
        ]
    quarantined = (
        failures.loc[failures["severity"] == "quarantine", QUARANTINE_COLUMNS]
        .sort_values(["month", "_source", "_source_row", "rule"])
        .reset_index(drop=True)
    )
    parts = _partitions(text, quarantined, max_quarantine_fraction)
    results, over_threshold = summarise(failures, parts, max_quarantine_fraction, missing, rules)
    return ValidationReport(
        load_ids=tuple(sorted(set(text["_load_id"]) - {""})),
        start_month=window.start,
        end_month=window.end,
        rows_checked=len(rows),
        max_quarantine_fraction=max_quarantine_fraction,
        results=results,
        quarantined=quarantined,
        blocking_failures=blocking + over_threshold,
        failures=failures.reset_index(drop=True),
        partitions=parts,
        missing_columns=tuple(missing),
        rules=rules,
    )
