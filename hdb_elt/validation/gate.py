"""The gate: writing what validation found to the audit tables, and stopping the run.

:func:`record_results` writes ``audit.validation_results`` and ``audit.quarantine`` and, when
the gate blocks, the blocked deliveries to ``audit.rejected_deliveries`` (which
``raw.latest_deliveries`` then leaves out); :func:`raise_if_blocked` stops the run with a
message naming file, line, column and rule; :func:`withdraw_rejection` takes a rejection back.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from hdb_elt.validation.engine import RESULT_COLUMNS, ValidationReport, status_of, summarise
from hdb_elt.validation.locations import basename, row_location
from hdb_elt.validation.raw_rows import DataQualityError
from hdb_elt.validation.rules import MONTH_PATTERN, THRESHOLD_RULE
from hdb_elt.warehouse import REJECTED_DELIVERIES, connect, ensure_latest_deliveries


class ValidationBlocked(DataQualityError):
    """A blocking rule failed: nothing downstream may run on this delivery."""

    def __init__(self, message: str, report: ValidationReport) -> None:
        super().__init__(message)
        self.report = report


def rejected_partitions(report: ValidationReport) -> pd.DataFrame:
    """The (load, month) deliveries of a report the gate blocks, with the first blocking rule
    and what it found: ``_load_id``, ``month``, ``rule``, ``detail``.

    A row-level blocking failure rejects its own (load, month); a month over the quarantine
    threshold rejects itself; a missing column, or a row whose month is not a month at all
    (it belongs to no month, only to its load), rejects every month of that load.
    """
    columns = ["_load_id", "month", "rule", "detail"]
    parts = report.partitions
    if not report.blocked or parts.empty:
        return pd.DataFrame(columns=columns)
    if report.missing_columns:
        missing = ", ".join(report.missing_columns)
        return parts.assign(
            rule="columns_present", detail=f"column(s) {missing} missing from the delivery"
        )[columns]
    failures = report.failures
    blocking = failures[failures["severity"] == "blocking"].assign(
        file=lambda d: d["_source"].map(basename)
    )
    blocking = blocking.sort_values(["file", "_source_row"], kind="stable")
    found: dict[tuple[str, str], tuple[str, str, int]] = {}

    def add(load_id: str, month: str, rule: str, detail: str) -> None:
        rule_, detail_, count = found.get((load_id, month), (rule, detail, 0))
        found[(load_id, month)] = (rule_, detail_, count + 1)

    valid_months = set(parts["month"][parts["month"].str.match(MONTH_PATTERN)])
    for f in blocking.to_dict("records"):
        detail = f"{row_location(f['_source'], f['_source_row'])}, {f['detail']}"
        if f["month"] in valid_months:
            add(f["_load_id"], f["month"], f["rule"], detail)
        else:  # a stray row: it condemns the whole load it came with
            for month in parts.loc[parts["_load_id"] == f["_load_id"], "month"]:
                add(f["_load_id"], month, f["rule"], detail)
    for p in parts[parts["over_threshold"]].to_dict("records"):
        add(
            p["_load_id"],
            p["month"],
            THRESHOLD_RULE,
            f"{p['quarantined_rows']:,} of {p['rows']:,} rows "
            f"({p['quarantined_fraction']:.1%}) failed row-level rules, more than "
            f"max_quarantine_fraction {report.max_quarantine_fraction:.1%}",
        )
    records = [
        (load_id, month, rule, detail + (f" (and {count - 1:,} more)" if count > 1 else ""))
        for (load_id, month), (rule, detail, count) in sorted(
            found.items(), key=lambda item: (item[0][1], item[0][0])
        )
    ]
    return pd.DataFrame.from_records(records, columns=columns)


def record_results(warehouse_path: Path, report: ValidationReport) -> None:
    """Write ``audit.validation_results`` and ``audit.quarantine`` in one transaction, and,
    when the gate blocks, the blocked deliveries to ``audit.rejected_deliveries``.

    Rows are written per (load, month) of the report, replacing what an earlier validation
    of the same load and month wrote, so a re-run never doubles them and validating one
    month never touches another. A blocked report records its results but no quarantine
    rows: nothing downstream runs on it. Its blocked (load, month) deliveries
    (:func:`rejected_partitions`) are appended as rejected, once each: from then on
    ``raw.latest_deliveries`` leaves them out, and the month falls back to its previous
    accepted delivery.
    """
    now = datetime.now(UTC).replace(tzinfo=None)
    failures, parts = report.failures, report.partitions
    failing = set(zip(failures["_load_id"], failures["month"], strict=True))
    # A month no rule failed in has the same results as any other, but for its row count:
    # written from a template, a window of hundreds of clean months takes milliseconds, not
    # the seconds that summarising each one costs (``summarise`` gives the same rows).
    clean = [
        (rule.name, rule.severity, status_of(rule.severity, 0), 0, "[]") for rule in report.rules
    ] + [(THRESHOLD_RULE, "blocking", "pass", 0, "[]")]
    records: list[tuple] = []
    for i, part in enumerate(parts.to_dict("records")):
        if (part["_load_id"], part["month"]) not in failing and not report.missing_columns:
            checked = int(part["rows"])
            records.extend(
                (
                    name,
                    severity,
                    status,
                    failing_rows,
                    checked,
                    sample,
                    part["_load_id"],
                    part["month"],
                )
                for name, severity, status, failing_rows, sample in clean
            )
            continue
        mine = failures[
            (failures["_load_id"] == part["_load_id"]) & (failures["month"] == part["month"])
        ]
        table, _ = summarise(
            mine,
            parts.iloc[[i]],
            report.max_quarantine_fraction,
            report.missing_columns,
            report.rules,
        )
        table = table.assign(_load_id=part["_load_id"], month=part["month"])
        records.extend(table.itertuples(index=False, name=None))
    new_results = pd.DataFrame.from_records(
        records, columns=[*RESULT_COLUMNS, "_load_id", "month"]
    ).astype({"failing_rows": "int64", "checked_rows": "int64"})
    new_results = new_results.assign(validated_at=now)
    quarantine = report.quarantined.iloc[0:0] if report.blocked else report.quarantined
    new_quarantine = quarantine.assign(quarantined_at=now)
    validated = parts[["_load_id", "month"]]
    rejected = rejected_partitions(report).assign(rejected_at=now)

    ensure_latest_deliveries(warehouse_path)
    with connect(warehouse_path) as con:
        con.register("validated", validated)
        con.register("new_results", new_results)
        con.register("new_quarantine", new_quarantine)
        con.register("new_rejected", rejected)
        con.execute("begin transaction")
        try:
            for table in ("audit.validation_results", "audit.quarantine"):
                con.execute(
                    f"""delete from {table} t using validated v
                        where t._load_id = v._load_id and t.month is not distinct from v.month"""
                )
            con.execute(
                """insert into audit.validation_results by name
                   select _load_id, month, rule, severity, status, failing_rows, checked_rows,
                          sample, validated_at
                   from new_results"""
            )
            con.execute(
                """insert into audit.quarantine by name
                   select _load_id, _source, _source_row, month, rule, detail, quarantined_at
                   from new_quarantine"""
            )
            con.execute(
                f"""insert into {REJECTED_DELIVERIES} by name
                    select n._load_id, n.month, n.rule, n.detail, n.rejected_at
                    from new_rejected as n
                    where not exists (
                        select 1 from {REJECTED_DELIVERIES} as r
                        where r._load_id = n._load_id and r.month is not distinct from n.month
                    )"""
            )
            con.execute("commit")
        except Exception:
            con.execute("rollback")
            raise


def withdraw_rejection(warehouse_path: Path, load_id: str, month: str | None = None) -> int:
    """Take back the gate's rejection of load ``load_id`` (of one ``month``, or all its
    months), so the delivery is its month's latest again and the next validation checks it,
    for example with a higher ``max_quarantine_fraction``. Returns the rejections removed."""
    with connect(warehouse_path) as con:
        (count,) = con.execute(
            f"""delete from {REJECTED_DELIVERIES}
                where _load_id = ? and (?::varchar is null or month = ?)""",
            [load_id, month, month],
        ).fetchone()
    return int(count)


def raise_if_blocked(report: ValidationReport, *, show: int = 5) -> None:
    """Raise :class:`ValidationBlocked` naming file, line, column and rule of the first failures.

    The first failure of each blocking rule is shown before further ones, so one rule failing
    on every row does not hide another.
    """
    if not report.blocked:
        return
    failures = report.blocking_failures
    firsts, rules = [], set()
    for failure in failures:
        if failure.rule not in rules:
            rules.add(failure.rule)
            firsts.append(failure)
    shown = (firsts + [f for f in failures if f not in firsts])[:show]
    lines = [str(f) for f in shown]
    if len(failures) > len(shown):
        counts = pd.Series([f.rule for f in failures]).value_counts(sort=False)
        per_rule = ", ".join(f"{rule} {count:,}" for rule, count in counts.items())
        lines.append(f"... and {len(failures) - len(shown):,} more ({per_rule} in all).")
    recorded = (
        f"record_results records the blocked delivery in {REJECTED_DELIVERIES}: it is never "
        "read again (raw keeps its rows), and its month falls back to its previous accepted "
        "delivery, if it has one."
    )
    if all(f.rule == THRESHOLD_RULE for f in failures):
        advice = (
            "Look at report.quarantined (or the samples in audit.validation_results). "
            f"{recorded} Deliver a corrected file, then re-run; or, if the rows are acceptable, "
            "raise max_quarantine_fraction, take the rejection back with "
            "hdb_elt.validation.withdraw_rejection(warehouse_path, load_id, month) and re-run."
        )
    else:
        advice = f"{recorded} Fix the file and deliver it again (or remove it), then re-run."
    raise ValidationBlocked(
        f"Validation blocked: {len(failures):,} blocking failure(s) in "
        f"{report.rows_checked:,} rows; nothing downstream will run.\n"
        + "\n".join(lines)
        + f"\n{advice}",
        report,
    )
