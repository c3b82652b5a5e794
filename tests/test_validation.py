"""Tests of the validate stage's data-quality gate (hdb_elt.validation)."""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from hdb_elt.settings import DATA_DIR
from hdb_elt.validation import (
    RULES,
    THRESHOLD_RULE,
    DataQualityError,
    NothingToValidate,
    RejectedDeliveriesWarning,
    ValidationBlocked,
    ValidationReport,
    quarantined_sample,
    raise_if_blocked,
    read_deliveries,
    record_results,
    rejected_partitions,
    rules_table,
    validate_load,
    withdraw_rejection,
)
from hdb_elt.warehouse import connect, ensure_warehouse, rejected_deliveries

GOOD_ROW = {
    "month": "2023-05",
    "town": "ANG MO KIO",
    "flat_type": "4 ROOM",
    "block": "308B",
    "street_name": "ANG MO KIO AVE 1",
    "storey_range": "19 TO 21",
    "floor_area_sqm": "92",
    "flat_model": "Model A",
    "lease_commence_date": "2012",
    "remaining_lease": "88 years 04 months",
    "resale_price": "560888",
}


def delivery(n: int = 200, month: str = "2023-05", load_id: str = "load-1") -> pd.DataFrame:
    """``n`` good, distinct raw rows of one delivery file, lines 2 to n + 1."""
    rows = pd.DataFrame([{**GOOD_ROW, "month": month, "block": str(100 + i)} for i in range(n)])
    rows["_source"] = f"/deliveries/resale-flat-prices-{month}.csv"
    rows["_source_row"] = range(2, n + 2)
    rows["_load_id"] = load_id
    return rows


def at_line(rows: pd.DataFrame, line: int, **values: str) -> pd.DataFrame:
    """A copy of ``rows`` with the row at CSV line ``line`` changed."""
    changed = rows.copy()
    position = changed.index[changed["_source_row"] == line][0]
    for column, value in values.items():
        changed.loc[position, column] = value
    return changed


def result(report, rule: str) -> dict:
    return report.results.set_index("rule").loc[rule].to_dict()


def test_good_rows_pass_every_rule():
    report = validate_load(delivery(), "2023-01", "2023-12")

    assert not report.blocked
    assert report.rows_checked == 200
    assert report.quarantined.empty
    statuses = dict(zip(report.results["rule"], report.results["status"], strict=True))
    assert statuses.pop("identical_rows") == "info"
    assert set(statuses.values()) == {"pass"}
    assert result(report, "identical_rows")["failing_rows"] == 0
    assert list(report.results["rule"]) == [r.name for r in RULES] + [THRESHOLD_RULE]
    assert list(report.results.columns) == [
        "rule",
        "severity",
        "status",
        "failing_rows",
        "checked_rows",
        "sample",
    ]
    assert "passed" in report.summary()


@pytest.mark.parametrize(
    ("column", "value", "rule", "detail"),
    [
        ("month", "2023-13", "month_format", "month '2023-13' is not a month"),
        ("month", "2023/05", "month_format", "month '2023/05' is not a month"),
        ("month", "", "month_format", "month '' is not a month"),
        ("month", "2022-12", "month_in_window", "outside the window 2023-01..2023-12"),
        ("floor_area_sqm", "abc", "types_parse", "floor_area_sqm 'abc' is not a number"),
        ("resale_price", "5OO000", "types_parse", "resale_price '5OO000' is not a number"),
        ("resale_price", "", "types_parse", "resale_price '' is not a number"),
        ("lease_commence_date", "19x5", "types_parse", "lease_commence_date '19x5' is not a year"),
        ("flat_type", "6 ROOM", "flat_type_known", "flat_type '6 ROOM' is not a known flat type"),
        ("flat_type", "4-room", "flat_type_known", "flat_type '4-room' is not a known flat type"),
        ("flat_type", "MULTIGEN", "flat_type_known", "flat_type 'MULTIGEN' is not a known"),
        ("storey_range", "1 TO 3", "storey_range_format", "does not match 'NN TO NN'"),
        ("storey_range", "06 TO 04", "storey_range_format", "'06 TO 04' runs downwards"),
        ("floor_area_sqm", "5", "floor_area_plausible", "floor_area_sqm '5' is below 20"),
        ("floor_area_sqm", "1200.5", "floor_area_plausible", "'1200.5' is above 400"),
        ("resale_price", "-5", "resale_price_plausible", "resale_price '-5' is below 50,000"),
        ("resale_price", "0", "resale_price_plausible", "resale_price '0' is below 50,000"),
        ("resale_price", "56088800", "resale_price_plausible", "is above 5,000,000"),
        ("lease_commence_date", "1950", "lease_year_plausible", "'1950' is before 1960"),
        ("lease_commence_date", "2030", "lease_year_plausible", "'2030' is after 2024"),
        ("remaining_lease", "88 yrs", "remaining_lease_format", "remaining_lease '88 yrs' is not"),
        ("remaining_lease", "88 years 13 months", "remaining_lease_format", "is not"),
        ("remaining_lease", "88.5", "remaining_lease_format", "remaining_lease '88.5' is not"),
        ("street_name", "ANG MO KIO\x00AVE 1", "no_control_characters", "U+0000"),
        ("block", "308\nB", "no_control_characters", "block '308\\nB' holds control"),
        ("flat_model", "Model A\x7f", "no_control_characters", "U+007F"),
        ("town", "PAYA LEBAR", "town_known", "town 'PAYA LEBAR' is not a known HDB town"),
        ("town", "", "town_known", "town '' is not a known HDB town"),
    ],
)
def test_each_rule_catches_its_bad_value_and_names_the_row(column, value, rule, detail):
    rows = at_line(delivery(), 14, **{column: value})

    report = validate_load(rows, "2023-01", "2023-12")

    severity = next(r.severity for r in RULES if r.name == rule)
    row = result(report, rule)
    assert row["status"] == {"blocking": "fail", "quarantine": "fail", "warning": "warn"}[severity]
    assert row["failing_rows"] == 1
    assert json.loads(row["sample"]) == [
        {"file": "resale-flat-prices-2023-05.csv", "line": 14, column: value}
    ]
    failing = report.failures[report.failures["rule"] == rule]
    assert failing["_source_row"].tolist() == [14]
    assert detail in failing["detail"].iloc[0]
    # Only this rule fires: a value that is not a number is not also out of range, etc.
    others = report.results[~report.results["rule"].isin([rule, "identical_rows"])]
    assert set(others["status"]) == {"pass"}, others
    if severity == "quarantine":
        assert report.quarantined[["_source_row", "rule"]].values.tolist() == [[14, rule]]
        assert not report.blocked  # 1 of 200 rows is under the 1% threshold
    elif severity == "blocking":
        assert report.quarantined.empty
        assert [(f.rule, f.source_row, f.column) for f in report.blocking_failures] == [
            (rule, 14, column)
        ]
    else:
        assert report.quarantined.empty and not report.blocked


def test_a_row_failing_two_columns_of_one_rule_is_one_failure_naming_both():
    rows = at_line(delivery(), 7, floor_area_sqm="big", resale_price="lots")

    report = validate_load(rows, "2023-01", "2023-12")

    failing = report.failures[report.failures["rule"] == "types_parse"]
    assert failing["_source_row"].tolist() == [7]
    assert failing["detail"].iloc[0] == (
        "floor_area_sqm 'big' is not a number; resale_price 'lots' is not a number"
    )


@pytest.mark.parametrize(
    "remaining_lease", ["61 years", "61 years 01 month", "61 years 11 months", "1 year"]
)
def test_remaining_lease_forms_that_are_allowed(remaining_lease):
    rows = at_line(delivery(), 2, remaining_lease=remaining_lease)

    report = validate_load(rows, "2023-01", "2023-12")

    assert result(report, "remaining_lease_format")["status"] == "pass"


# --- the five resources since 1990 ---------------------------------------------------------

HISTORY = DATA_DIR / "history_sample"
# A good row of each resource, in its format and quirks (as data/history_sample/ writes them).
ERA_ROWS = {
    "1990s": {
        **GOOD_ROW, "month": "1990-01", "flat_type": "1 ROOM", "town": "ANG MO KIO",
        "storey_range": "01 TO 03", "floor_area_sqm": "31", "flat_model": "IMPROVED",
        "lease_commence_date": "1977", "remaining_lease": "", "resale_price": "9000",
    },
    "2000s": {
        **GOOD_ROW, "month": "2005-07", "flat_type": "MULTI GENERATION", "town": "LIM CHU KANG",
        "flat_model": "Multi Generation", "lease_commence_date": "1987", "remaining_lease": "",
        "resale_price": "147000.0",
    },
    "2012-2014": {
        **GOOD_ROW, "month": "2013-04", "storey_range": "01 TO 05", "lease_commence_date": "1985",
        "remaining_lease": "", "resale_price": "388000",
    },
    "2015-2016": {
        **GOOD_ROW, "month": "2016-02", "lease_commence_date": "1986", "remaining_lease": "70",
        "resale_price": "420000",
    },
    "2017 onwards": {**GOOD_ROW, "remaining_lease": "62 years 01 month"},
}  # fmt: skip


def era_delivery(era: str, n: int = 200, **changes: str) -> pd.DataFrame:
    """``n`` good rows of ``era`` (distinct blocks), the one at line 14 changed by ``changes``."""
    row = ERA_ROWS[era]
    rows = pd.DataFrame([{**row, "block": str(100 + i)} for i in range(n)])
    rows["_source"] = f"/deliveries/{era}.csv"
    rows["_source_row"] = range(2, n + 2)
    rows["_load_id"] = "history"
    return at_line(rows, 14, **changes) if changes else rows


@pytest.mark.parametrize("era", ERA_ROWS)
def test_a_good_row_of_every_resource_passes_every_rule(era):
    report = validate_load(era_delivery(era), "1990-01", "2023-12")

    flagged = report.failures[report.failures["severity"] != "info"]
    assert flagged.empty, flagged[["_source_row", "rule", "detail"]].to_string()


def test_the_five_fixture_files_pass_the_gate_with_nothing_quarantined():
    """Every row of the five resources' fixtures (1990-01..2022-12, two a month, as published),
    read as the loader reads them: a column the resource lacks is empty."""
    frames = []
    for path in sorted(HISTORY.glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            rows = pd.DataFrame(list(csv.DictReader(handle)), dtype="string")
        rows = rows.reindex(columns=list(GOOD_ROW), fill_value="")
        rows["_source"] = str(path)
        rows["_source_row"] = range(2, len(rows) + 2)
        rows["_load_id"] = "history"
        frames.append(rows)
    rows = pd.concat(frames, ignore_index=True)
    assert len(frames) == 5 and rows["month"].min() == "1990-01"

    report = validate_load(rows, "1990-01", "2022-12")

    assert report.rows_checked == 2 * 12 * 33
    flagged = report.failures[report.failures["severity"] != "info"]
    assert flagged.empty, flagged[["_source", "_source_row", "rule", "detail"]].to_string()
    assert not report.blocked


@pytest.mark.parametrize(
    ("era", "column", "value", "rule", "detail"),
    [
        # a price is judged against its era: cheap in 1990 is not cheap in 2023
        ("1990s", "resale_price", "900", "resale_price_plausible", "'900' is below 1,000"),
        ("2000s", "resale_price", "9000.0", "resale_price_plausible", "'9000.0' is below 10,000"),
        ("2017 onwards", "resale_price", "9000", "resale_price_plausible", "is below 50,000"),
        # the remaining lease is as the month's resource writes it
        ("1990s", "remaining_lease", "70", "remaining_lease_format",
         "'70' is not empty: the resource has no remaining lease (month 1990-01, resource "
         "d_ebc5ab87086db484f88045b47411ebc5)"),
        ("2012-2014", "remaining_lease", "70 years", "remaining_lease_format", "is not empty"),
        ("2015-2016", "remaining_lease", "", "remaining_lease_format",
         "'' is not a whole number of years such as '70' (month 2016-02"),
        ("2015-2016", "remaining_lease", "70 years 01 month", "remaining_lease_format",
         "is not a whole number of years"),
        ("2017 onwards", "remaining_lease", "", "remaining_lease_format",
         "'' is not 'NN years MM months' or 'NN years' (month 2023-05, resource "
         "d_8b84c4ee58e3cfc0ece0d773c8ca6abc)"),
        ("2017 onwards", "remaining_lease", "70", "remaining_lease_format", "'70' is not 'NN"),
        # the lease starts before the sale, in every era
        ("1990s", "lease_commence_date", "1995", "lease_year_plausible", "after 1991 (sale year"),
        ("2000s", "storey_range", "05 TO 01", "storey_range_format", "runs downwards"),
    ],
)  # fmt: skip
def test_each_era_quarantines_its_own_bad_values(era, column, value, rule, detail):
    report = validate_load(era_delivery(era, **{column: value}), "1990-01", "2023-12")

    assert report.quarantined[["_source_row", "rule"]].values.tolist() == [[14, rule]]
    assert detail in report.quarantined["detail"].iloc[0]
    assert f"{era}.csv line 14" in quarantined_sample(report).pipe(
        lambda s: f"{s.loc[0, 'file']} line {s.loc[0, 'line']}"
    )


def test_missing_column_blocks_and_names_it():
    rows = delivery().drop(columns=["storey_range"])

    report = validate_load(rows, "2023-01", "2023-12")

    assert report.blocked
    assert report.missing_columns == ("storey_range",)
    assert result(report, "columns_present")["status"] == "fail"
    assert json.loads(result(report, "columns_present")["sample"]) == [{"column": "storey_range"}]
    assert set(report.results["status"]) == {"fail", "skipped"}
    with pytest.raises(ValidationBlocked, match=r"column storey_range: missing from the delivery"):
        raise_if_blocked(report)


def test_real_2023_data_passes_with_zero_quarantined_and_14_identical_rows(shared_monthly):
    frames = []
    for path in sorted(shared_monthly.glob("resale-flat-prices-*.csv")):
        rows = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        rows["_source"] = str(path)
        rows["_source_row"] = range(2, len(rows) + 2)
        rows["_load_id"] = "reference"
        frames.append(rows)
    rows = pd.concat(frames, ignore_index=True)

    report = validate_load(rows, "2023-01", "2023-12")

    assert report.rows_checked == 25_777
    assert report.quarantined.empty
    assert not report.blocked
    raise_if_blocked(report)
    statuses = report.results.set_index("rule")["status"]
    assert statuses.drop("identical_rows").eq("pass").all(), statuses
    # The data README counts 14 exact duplicates in 2023: 14 rows repeat an earlier row.
    assert result(report, "identical_rows")["failing_rows"] == 14
    identical = report.failures[report.failures["rule"] == "identical_rows"]
    assert identical["detail"].str.startswith("identical in every source column to line").all()
    assert report.partitions["rows"].sum() == 25_777 and len(report.partitions) == 12
    assert str(shared_monthly) not in report.results.to_csv()


def test_a_few_impossible_prices_are_quarantined_row_by_row_and_the_run_goes_on():
    rows = delivery(500)
    for line, price in [(10, "-5"), (20, "0"), (30, "99999999")]:
        rows = at_line(rows, line, resale_price=price)

    report = validate_load(rows, "2023-01", "2023-12")

    assert report.quarantined["_source_row"].tolist() == [10, 20, 30]
    assert set(report.quarantined["rule"]) == {"resale_price_plausible"}
    assert report.quarantined["detail"].tolist() == [
        "resale_price '-5' is below 50,000",
        "resale_price '0' is below 50,000",
        "resale_price '99999999' is above 5,000,000",
    ]
    assert report.quarantined_rows == 3
    assert result(report, THRESHOLD_RULE) | {"sample": None} == {
        "severity": "blocking",
        "status": "pass",
        "failing_rows": 3,
        "checked_rows": 500,
        "sample": None,
    }
    assert not report.blocked
    raise_if_blocked(report)  # does not raise


def test_two_percent_impossible_prices_block_at_a_one_percent_threshold():
    rows = delivery(500)
    for line in range(2, 12):  # 10 of 500 rows: 2%
        rows = at_line(rows, line, resale_price="1")

    report = validate_load(rows, "2023-01", "2023-12", max_quarantine_fraction=0.01)

    assert report.quarantined_rows == 10
    assert report.blocked
    assert result(report, THRESHOLD_RULE)["status"] == "fail"
    assert json.loads(result(report, THRESHOLD_RULE)["sample"]) == [
        {"month": "2023-05", "quarantined_rows": 10, "rows": 500}
    ]
    with pytest.raises(ValidationBlocked) as raised:
        raise_if_blocked(report)
    assert "month 2023-05: 10 of 500 rows (2.0%) failed row-level rules" in str(raised.value)
    # ...naming the file, the first rows, the column and the rule to look at.
    assert (
        "(first: resale-flat-prices-2023-05.csv line 2: resale_price '1' is below 50,000, "
        "rule resale_price_plausible; resale-flat-prices-2023-05.csv line 3:" in str(raised.value)
    )
    assert "max_quarantine_fraction 1.0% (rule quarantine_threshold, blocking)" in str(raised.value)
    assert "raise max_quarantine_fraction" in str(raised.value)

    lenient = validate_load(rows, "2023-01", "2023-12", max_quarantine_fraction=0.05)
    assert not lenient.blocked and lenient.quarantined_rows == 10


def test_the_threshold_applies_to_each_month_so_a_bad_month_is_not_diluted():
    bad_month = delivery(100, month="2023-04")
    for line in range(2, 4):  # 2 of 100 rows of April: 2%
        bad_month = at_line(bad_month, line, flat_type="6 ROOM")
    rows = pd.concat([bad_month, delivery(900, month="2023-05")], ignore_index=True)

    report = validate_load(rows, "2023-01", "2023-12")  # 0.2% of all rows

    assert report.blocked
    assert report.partitions.set_index("month")["over_threshold"].to_dict() == {
        "2023-04": True,
        "2023-05": False,
    }


def test_a_new_town_warns_and_keeps_its_rows():
    rows = delivery()
    for line in (5, 6, 7):
        rows = at_line(rows, line, town="PAYA LEBAR")

    report = validate_load(rows, "2023-01", "2023-12")

    town = result(report, "town_known")
    assert (town["status"], town["failing_rows"]) == ("warn", 3)
    assert report.quarantined.empty
    assert not report.blocked
    assert report.failures.loc[report.failures["rule"] == "town_known", "_source_row"].tolist() == [
        5,
        6,
        7,
    ]
    assert "0 quarantined, 1 warning(s), passed" in report.summary()


def test_identical_rows_are_counted_never_removed():
    rows = delivery(10)
    rows = pd.concat([rows, rows.iloc[[3]].assign(_source_row=12)], ignore_index=True)

    report = validate_load(rows, "2023-01", "2023-12")

    identical = result(report, "identical_rows")
    assert (identical["status"], identical["failing_rows"]) == ("info", 1)
    assert json.loads(identical["sample"]) == [
        {
            "file": "resale-flat-prices-2023-05.csv",
            "line": 12,
            "detail": "identical in every source column to line 5 (kept: a distinct sale)",
        }
    ]
    assert report.quarantined.empty and not report.blocked
    assert report.rows_checked == 11


def test_raise_if_blocked_names_file_line_column_rule_and_what_to_do():
    rows = delivery(20)
    for line in (14, 3, 9, 11, 12, 13, 15):
        rows = at_line(rows, line, month="2023-13")

    report = validate_load(rows, "2023-01", "2023-12")

    with pytest.raises(ValidationBlocked) as raised:
        raise_if_blocked(report, show=5)
    message = str(raised.value)
    assert message.splitlines()[1] == (
        "resale-flat-prices-2023-05.csv line 3, column month: '2023-13' is not a month "
        "(expected YYYY-MM, for example 2023-07) (rule month_format, blocking)."
    )
    assert "resale-flat-prices-2023-05.csv line 14, column month: '2023-13'" not in message
    assert "... and 2 more (month_format 7 in all)." in message
    assert "audit.rejected_deliveries" in message
    assert message.endswith("Fix the file and deliver it again (or remove it), then re-run.")
    assert "/deliveries" not in message
    assert raised.value.report is report
    assert issubclass(ValidationBlocked, DataQualityError)


def test_raise_if_blocked_shows_the_first_failure_of_every_blocking_rule():
    rows = delivery(20).assign(lease_commence_date="later")
    rows = at_line(rows, 21, month="2024-01")

    report = validate_load(rows, "2023-01", "2023-12")

    with pytest.raises(ValidationBlocked) as raised:
        raise_if_blocked(report, show=3)
    lines = str(raised.value).splitlines()
    assert [line.split("(rule ")[-1] for line in lines[1:4]] == [
        "types_parse, blocking).",
        "month_in_window, blocking).",
        "types_parse, blocking).",
    ]
    assert lines[2].startswith("resale-flat-prices-2023-05.csv line 21, column month: '2024-01'")
    assert lines[4] == "... and 18 more (types_parse 20, month_in_window 1 in all)."


def test_max_quarantine_fraction_must_be_a_fraction():
    with pytest.raises(ValueError, match="max_quarantine_fraction"):
        validate_load(delivery(), "2023-01", "2023-12", max_quarantine_fraction=5)


def test_rules_table_lists_every_rule_with_its_threshold():
    table = rules_table(0.02)

    assert list(table["rule"]) == [r.name for r in RULES] + [THRESHOLD_RULE]
    assert "2.0%" in table.set_index("rule").loc[THRESHOLD_RULE, "description"]


# --- the warehouse --------------------------------------------------------------------------


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "warehouse.duckdb"
    ensure_warehouse(path)
    return path


def load(path: Path, rows: pd.DataFrame, loaded_at: str) -> None:
    """Append rows to raw as one committed load would."""
    with connect(path) as con:
        con.register("delivered", rows.assign(_loaded_at=datetime.fromisoformat(loaded_at)))
        con.execute("insert into raw.resale_flat_prices by name select * from delivered")


def audit_counts(path: Path) -> tuple[int, int]:
    with connect(path, read_only=True) as con:
        results = con.execute("select count(*) from audit.validation_results").fetchone()[0]
        quarantine = con.execute("select count(*) from audit.quarantine").fetchone()[0]
    return results, quarantine


def test_read_deliveries_reads_each_months_latest_delivery(warehouse):
    load(warehouse, delivery(5, "2023-04", "load-a"), "2024-01-01 00:00:00")
    load(warehouse, delivery(3, "2023-05", "load-a"), "2024-01-01 00:00:00")
    load(warehouse, delivery(4, "2023-05", "load-b"), "2024-02-01 00:00:00")

    window = read_deliveries(warehouse, "2023-01", "2023-12")
    assert window.groupby("month")["_load_id"].unique().map(list).to_dict() == {
        "2023-04": ["load-a"],
        "2023-05": ["load-b"],
    }
    assert len(window) == 9
    assert list(read_deliveries(warehouse, "2023-04", "2023-04")["month"].unique()) == ["2023-04"]


def test_reading_an_empty_warehouse_says_what_to_do(warehouse):
    with pytest.raises(
        NothingToValidate, match=r"No rows for 2023-01\.\.2023-12 .*: run the extract-load"
    ):
        read_deliveries(warehouse, "2023-01", "2023-12")


def test_record_results_is_idempotent_and_writes_quarantine_rows_once(warehouse):
    rows = delivery(300)
    for line in (10, 11):
        rows = at_line(rows, line, resale_price="-5")
    load(warehouse, rows, "2024-01-01 00:00:00")
    report = validate_load(read_deliveries(warehouse, "2023-01", "2023-12"), "2023-01", "2023-12")

    record_results(warehouse, report)
    first = audit_counts(warehouse)
    record_results(warehouse, report)

    assert audit_counts(warehouse) == first == (len(RULES) + 1, 2)
    with connect(warehouse, read_only=True) as con:
        quarantine = con.execute(
            "select _load_id, _source, _source_row, month, rule, detail from audit.quarantine "
            "order by _source_row"
        ).fetchall()
        price = con.execute(
            "select month, status, failing_rows, checked_rows from audit.validation_results "
            "where rule = 'resale_price_plausible'"
        ).fetchall()
    assert quarantine == [
        (
            "load-1",
            "/deliveries/resale-flat-prices-2023-05.csv",
            line,
            "2023-05",
            "resale_price_plausible",
            "resale_price '-5' is below 50,000",
        )
        for line in (10, 11)
    ]
    assert price == [("2023-05", "fail", 2, 300)]


def test_validating_one_month_replaces_only_that_month(warehouse):
    april, may = delivery(200, "2023-04"), delivery(200, "2023-05")
    load(warehouse, at_line(april, 2, flat_type="6 ROOM"), "2024-01-01 00:00:00")
    load(warehouse, at_line(may, 3, flat_type="6 ROOM"), "2024-01-01 00:00:00")

    for month in ("2023-04", "2023-05", "2023-04"):
        rows = read_deliveries(warehouse, month, month)
        record_results(warehouse, validate_load(rows, "2023-01", "2023-12"))

    with connect(warehouse, read_only=True) as con:
        quarantined = con.execute(
            "select month, _source_row from audit.quarantine order by month"
        ).fetchall()
        results = con.execute(
            "select month, count(*) from audit.validation_results group by month order by month"
        ).fetchall()
    assert quarantined == [("2023-04", 2), ("2023-05", 3)]
    assert results == [("2023-04", len(RULES) + 1), ("2023-05", len(RULES) + 1)]


def test_a_blocked_report_records_results_but_quarantines_nothing(warehouse):
    rows = at_line(delivery(300), 14, month="2023-13")
    rows = at_line(rows, 15, resale_price="-5")
    load(warehouse, rows, "2024-01-01 00:00:00")
    report = validate_load(read_deliveries(warehouse, "2023-01", "2023-12"), "2023-01", "2023-12")
    assert report.blocked and len(report.quarantined) == 1

    record_results(warehouse, report)

    with connect(warehouse, read_only=True) as con:
        statuses = dict(
            con.execute(
                "select rule, status from audit.validation_results where month = '2023-13'"
            ).fetchall()
        )
        quarantined = con.execute("select count(*) from audit.quarantine").fetchone()[0]
    assert statuses["month_format"] == "fail"
    assert quarantined == 0


def test_read_deliveries_adds_stray_rows_of_the_window_loads_and_the_gate_blocks(warehouse):
    load(warehouse, delivery(5, "2023-04", "load-a"), "2024-01-01 00:00:00")
    load(warehouse, delivery(3, "2023-05", "load-a"), "2024-01-01 00:00:00")
    revised = at_line(delivery(4, "2023-05", "load-b"), 3, month="2023-13")
    load(warehouse, revised, "2024-02-01 00:00:00")
    load(warehouse, at_line(delivery(2, "2023-06", "load-c"), 2, month="2023-13"), "2024-03-01")

    rows = read_deliveries(warehouse, "2023-05", "2023-05")
    # load-b's three May rows, its stray 2023-13 row; not load-a's superseded May, nor load-c.
    assert sorted(zip(rows["_load_id"], rows["month"], strict=True)) == [
        ("load-b", "2023-05"), ("load-b", "2023-05"), ("load-b", "2023-05"), ("load-b", "2023-13")
    ]  # fmt: skip
    assert len(read_deliveries(warehouse, "2023-04", "2023-06")) == 5 + 4 + 2

    report = validate_load(rows, "2023-05", "2023-05")
    assert report.blocked
    with pytest.raises(
        ValidationBlocked, match=r"resale-flat-prices-2023-05.csv line 3, column month"
    ):
        raise_if_blocked(report)


def test_quarantined_sample_shows_file_line_rule_and_detail():
    rows = at_line(delivery(200), 7, resale_price="1")
    report = validate_load(rows, "2023-05", "2023-05")
    sample = quarantined_sample(report)
    assert sample.to_dict("records") == [
        {"file": "resale-flat-prices-2023-05.csv", "line": 7, "month": "2023-05",
         "rule": "resale_price_plausible", "detail": sample.loc[0, "detail"]}
    ]  # fmt: skip
    assert "'1'" in sample.loc[0, "detail"]


def test_recorded_results_of_clean_and_failing_months_are_those_of_each_month_alone(warehouse):
    # record_results writes a clean month from a template, a failing one through _summarise:
    # both must be what validating that month alone reports.
    clean, failing = delivery(50, "2023-01"), at_line(delivery(50, "2023-02"), 3, town="MARS")
    report = validate_load(pd.concat([clean, failing], ignore_index=True), "2023-01", "2023-12")
    record_results(warehouse, report)
    with connect(warehouse, read_only=True) as con:
        recorded = con.execute(
            "select month, rule, severity, status, failing_rows, checked_rows, sample "
            "from audit.validation_results order by month, rule"
        ).fetchall()
    expected = []
    for month, rows in (("2023-01", clean), ("2023-02", failing)):
        alone = validate_load(rows, "2023-01", "2023-12").results
        expected += [(month, *row) for row in alone.itertuples(index=False, name=None)]
    assert recorded == sorted(expected)
    assert ("2023-02", "town_known", "warning", "warn", 1, 50) in [r[:6] for r in recorded]


# --- rejected deliveries ----------------------------------------------------------------------


def gate(path: Path, start: str, end: str, **options) -> ValidationReport:
    """Read, validate and record a window as the validate stage does; return the report."""
    report = validate_load(read_deliveries(path, start, end), start, end, **options)
    record_results(path, report)
    return report


def test_a_blocked_delivery_is_rejected_and_its_month_falls_back_to_the_accepted_one(warehouse):
    load(warehouse, delivery(5, "2023-04", "load-a"), "2024-01-01 00:00:00")
    load(warehouse, delivery(6, "2023-05", "load-a"), "2024-01-01 00:00:00")
    assert not gate(warehouse, "2023-04", "2023-05").blocked
    # May delivered again with an unreadable price: the gate blocks it and records it rejected
    load(warehouse, at_line(delivery(7, "2023-05", "load-b"), 4, resale_price="n/a"), "2024-02-01")
    blocked = gate(warehouse, "2023-04", "2023-05")
    assert blocked.blocked

    with connect(warehouse, read_only=True) as con:
        rejected = rejected_deliveries(con)
    assert [(r[0], r[1], r[2]) for r in rejected] == [("load-b", "2023-05", "types_parse")]
    assert "resale-flat-prices-2023-05.csv line 4" in rejected[0][3]
    assert "'n/a' is not a number" in rejected[0][3]
    # April is not rejected: its delivery did nothing wrong
    rows = read_deliveries(warehouse, "2023-04", "2023-05")
    assert rows.groupby("month")["_load_id"].unique().map(list).to_dict() == {
        "2023-04": ["load-a"],
        "2023-05": ["load-a"],
    }
    # validating again passes on May's accepted delivery and records no second rejection
    assert not gate(warehouse, "2023-04", "2023-05").blocked
    record_results(warehouse, blocked)  # the same blocked report again: still one rejection
    with connect(warehouse, read_only=True) as con:
        assert len(rejected_deliveries(con)) == 1


def test_a_month_whose_only_delivery_was_rejected_says_so(warehouse, tmp_path):
    delivered = tmp_path / "resale-flat-prices-2023-06.csv"
    delivered.write_text("month\n")
    rows = delivery(40, "2023-06", "load-z").assign(_source=str(delivered), resale_price="9")
    load(warehouse, rows, "2024-03-01 00:00:00")
    assert gate(warehouse, "2023-06", "2023-06").blocked  # every price implausible

    with pytest.raises(NothingToValidate) as raised:
        read_deliveries(warehouse, "2023-06", "2023-06")
    message = str(raised.value)
    assert "2023-06: load load-z (file resale-flat-prices-2023-06.csv, still in" in message
    assert "by rule quarantine_threshold: 40 of 40 rows (100.0%)" in message
    assert "Deliver a corrected file" in message

    delivered.unlink()  # the user removes the file, as the gate's message advised
    with pytest.raises(NothingToValidate, match=r"2023-06\.csv, no longer there\), rejected"):
        read_deliveries(warehouse, "2023-06", "2023-06")

    # in a window with other months, those are read, and the rejected-only month is named
    load(warehouse, delivery(5, "2023-05", "load-y"), "2024-03-02 00:00:00")
    with pytest.warns(RejectedDeliveriesWarning, match=r"2023-06: load load-z") as warned:
        rows = read_deliveries(warehouse, "2023-05", "2023-06")
    assert set(rows["month"]) == {"2023-05"}
    assert "Some months of 2023-05..2023-06 have no accepted delivery" in str(warned[0].message)

    # a rejection taken back (say, to accept the rows with a higher threshold) is read again
    assert withdraw_rejection(warehouse, "load-z", "2023-06") == 1
    assert not gate(warehouse, "2023-06", "2023-06", max_quarantine_fraction=1).blocked


def test_rejected_partitions_name_each_blocked_month_and_its_first_failure():
    may = at_line(
        at_line(delivery(50, "2023-05", "load-b"), 9, resale_price="x"), 3, month="2023-13"
    )
    june = delivery(50, "2023-06", "load-b")
    july = delivery(50, "2023-07", "load-c").assign(resale_price="1")  # over the threshold
    august = delivery(50, "2023-08", "load-d")
    report = validate_load(pd.concat([may, june, july, august]), "2023-01", "2023-12")

    found = rejected_partitions(report)
    assert list(zip(found["_load_id"], found["month"], found["rule"], strict=True)) == [
        # the stray 2023-13 row condemns every month of its load (it belongs to none)
        ("load-b", "2023-05", "month_format"),
        ("load-b", "2023-06", "month_format"),
        ("load-c", "2023-07", THRESHOLD_RULE),
        ("load-b", "2023-13", "month_format"),
    ]
    details = dict(zip(found["month"], found["detail"], strict=True))
    assert details["2023-05"].startswith("resale-flat-prices-2023-05.csv line 3, month '2023-13'")
    assert details["2023-05"].endswith("(and 1 more)")  # line 9's price
    assert "50 of 50 rows (100.0%)" in details["2023-07"]
    assert rejected_partitions(validate_load(august, "2023-01", "2023-12")).empty


# --- copy-paste accidents and normalised spellings -----------------------------------------


def test_a_file_concatenated_with_itself_warns_naming_the_share():
    once = delivery(100)
    twice = pd.concat([once, once.assign(_source_row=once["_source_row"] + 100)])
    report = validate_load(twice, "2023-01", "2023-12")

    row = result(report, "identical_rows_share")
    assert (row["status"], row["failing_rows"]) == ("warn", 100)  # the second copy's rows
    assert not report.blocked and report.quarantined.empty  # kept: identical rows are sales
    detail = report.failures.loc[report.failures["rule"] == "identical_rows_share", "detail"]
    assert detail.iloc[0].startswith(
        "month 2023-05: 100.0% of the delivery's rows have an identical twin, more than 50%"
    )
    # a few twins, as the real data has, are counted, not warned about
    few = pd.concat([once, once.head(3).assign(_source_row=[102, 103, 104])])
    assert result(validate_load(few, "2023-01", "2023-12"), "identical_rows_share")["status"] == (
        "pass"
    )
