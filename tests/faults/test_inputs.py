"""Input hygiene: every value that reaches SQL or a subprocess (months, paths, names) is
checked or bound, never pasted into a string; no shell ever runs; the API key stays secret."""

from __future__ import annotations

import ast
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from tap_hdb_resale.tap import month_setting_errors

from classroom.cli import main
from hdb_elt import report, transform, validation
from hdb_elt import test as test_stage
from hdb_elt.months import MonthError
from hdb_elt.settings import REPO_ROOT, SettingsError, load_settings, stage_settings

HOSTILE_MONTHS = [
    "2023-01'; drop table raw.resale_flat_prices; --",
    "2023-01 or 1=1",
    "2023-01\nselect 1",
    "$(rm -rf ~)",
    "2023-1",
    "",
]
MISSING = Path("/nonexistent/warehouse.duckdb")  # a month check must come before any I/O

MONTH_ENTRY_POINTS: dict[str, Callable[[str], object]] = {
    "settings (environment, .env)": lambda m: load_settings(
        {"HDB_START_MONTH": m or " x"}, dotenv=False
    ),
    "notebook parameters": lambda m: stage_settings(start_month=m or " x"),
    "dbt --vars": lambda m: transform.window_vars(m, "2023-12"),
    "validate: read_deliveries": lambda m: validation.read_deliveries(MISSING, m, "2023-12"),
    "test: reconciliation": lambda m: test_stage.reconciliation(MISSING, m, "2023-12"),
    "transform: built_models": lambda m: transform.built_models(MISSING, m, "2023-12", MISSING),
    "transform: mart_preview": lambda m: transform.mart_preview(MISSING, m, "2023-12"),
    "report: read_report_data": lambda m: report.read_report_data(MISSING, m, "2023-12"),
}  # fmt: skip


@pytest.mark.parametrize("month", HOSTILE_MONTHS)
@pytest.mark.parametrize("entry", MONTH_ENTRY_POINTS)
def test_a_month_that_is_not_yyyy_mm_is_refused_before_any_sql(entry: str, month: str) -> None:
    with pytest.raises((MonthError, SettingsError)) as refused:
        MONTH_ENTRY_POINTS[entry](month)
    assert "YYYY-MM" in str(refused.value) or "month" in str(refused.value)


@pytest.mark.parametrize("month", HOSTILE_MONTHS)
def test_the_tap_refuses_a_month_setting_that_is_not_a_month(month: str) -> None:
    assert month_setting_errors({"start_month": month, "end_month": "2023-12"})


def test_a_mart_name_is_one_of_the_marts() -> None:
    with pytest.raises(ValueError, match="expected one of"):
        transform.mart_preview(MISSING, "2023-01", "2023-01", mart="dim_town; drop table x")


@pytest.mark.parametrize("name", ["HDB_WAREHOUSE_PATH", "HDB_RESALE_DATA_DIR"])
def test_a_path_setting_with_a_nul_byte_is_refused(name: str) -> None:
    with pytest.raises(SettingsError, match=f"{name} contains a NUL byte"):
        load_settings({name: "data/w\x00.duckdb"}, dotenv=False)


# --- static checks over the code that runs things --------------------------------------------

CODE = [
    *sorted((REPO_ROOT / "hdb_elt").rglob("*.py")),
    *sorted((REPO_ROOT / "meltano" / "tap-hdb-resale" / "tap_hdb_resale").glob("*.py")),
    *sorted((REPO_ROOT / "meltano" / "target-hdb-duckdb" / "target_hdb_duckdb").glob("*.py")),
]
_SQL_RE = re.compile(r"\b(select|insert|delete|create|alter|drop|update)\b", re.IGNORECASE)

# Every expression interpolated into SQL text, and why it is safe. A new one fails the test
# below until it is reviewed and added here.
SQL_INTERPOLATIONS = {
    # Module constants naming the project's own tables.
    "RAW_TABLE": "constant",
    "LATEST_DELIVERIES": "constant (the view of the latest accepted deliveries)",
    "REJECTED_DELIVERIES": "constant",
    "EXTRACT_LOADS": "constant",
    "FACT_TABLE": "constant",
    "FACT": "constant",
    "RAW": "constant",
    "RELATION": "constant",
    "table": "a loop over constant table names; in the loader, quote()d schema and stream",
    "', '.join((f'{name} varchar' for name in SOURCE_COLUMNS))": "constant column names",
    "source_columns": "the constant SOURCE_COLUMNS, joined",
    # SQL fragments the code chooses among constants.
    "quarantine": "one of two constant subqueries",
    "valid": "a constant regexp predicate",
    "in_window": "a constant predicate; the months are bound parameters ($1, $2)",
    "where": "one of two constant predicates; the months are bound parameters",
    "order": "one of two constant column names",
    "months_sql": "a constant subquery",
    "key": "one of two constant column names (year or month_key)",
    # Identifiers from the project's own dbt manifest or a validated name, quoted.
    "schema": "from dbt's manifest (the project's own models), double-quoted",
    "name": "from dbt's manifest (the project's own models), double-quoted",
    "mart": "checked against MART_ORDER's keys first",
    "MART_ORDER[mart]": "a constant ORDER BY for a checked mart name",
    # The loader: identifiers pass quote(), which accepts only [A-Za-z_][A-Za-z0-9_]*.
    "quote(schema)": "quote() refuses anything but letters, digits, underscores",
    "quote(self.schema)": "quote()",
    "quote(name)": "quote()",
    "state.table": "quote()d schema and stream names",
    "columns_sql": "quote()d names and types from duckdb_type()'s fixed set",
    "names": "quote()d column names",
    "kind": "a type from duckdb_type()'s fixed set",
    "source": "read_parquet or read_json of bound $files, its columns quote()d names and "
    "duckdb_type()'s types",
    "source_column": "one of two constant expressions",
}


def _sql_interpolations(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
            if _SQL_RE.search(text) and re.search(r"\b(from|into|table|schema)\b", text, re.I):
                found += [
                    (node.lineno, ast.unparse(v.value))
                    for v in node.values
                    if isinstance(v, ast.FormattedValue)
                ]
    return found


def test_sql_text_interpolates_only_reviewed_constants_and_checked_names() -> None:
    unreviewed = [
        f"{path.relative_to(REPO_ROOT)}:{line}: {{{expression}}}"
        for path in CODE
        for line, expression in _sql_interpolations(path)
        if expression not in SQL_INTERPOLATIONS
    ]
    assert not unreviewed, "values pasted into SQL (bind them, or review and list them):\n" + (
        "\n".join(unreviewed)
    )


def test_nothing_runs_through_a_shell() -> None:
    offenders = []
    for path in CODE:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            called = ast.unparse(node.func)
            shell = any(
                k.arg == "shell" and not (isinstance(k.value, ast.Constant) and not k.value.value)
                for k in node.keywords
            )
            if shell or called in ("os.system", "os.popen", "subprocess.getoutput"):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: {called}")
            # A subprocess command is a list (each argument one item), never one string.
            if (
                called.startswith("subprocess.")
                and node.args
                and isinstance(node.args[0], ast.JoinedStr | ast.Constant | ast.BinOp)
            ):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: string command")
    assert not offenders


# --- the API key -----------------------------------------------------------------------------


def test_the_api_key_comes_only_from_the_environment_or_a_git_ignored_env_file() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", ".env"], cwd=REPO_ROOT, check=False
    ).returncode
    assert ignored == 0, ".env must be git-ignored"
    example = (REPO_ROOT / ".env.example").read_text()
    assert re.search(r"^#?\s*DATA_GOV_SG_API_KEY=\s*$", example, re.MULTILINE)
    tracked = subprocess.run(
        ["git", "ls-files", ".env"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert tracked.stdout == ""
    meltano_yml = (REPO_ROOT / "meltano" / "meltano.yml").read_text()
    assert "api_key: ${DATA_GOV_SG_API_KEY}" in meltano_yml
    assert re.search(r"name: api_key\n\s+kind: string\n\s+sensitive: true", meltano_yml)


def test_settings_never_show_the_key(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    key = "planted-key-3a9d7e"
    monkeypatch.setenv("DATA_GOV_SG_API_KEY", key)
    settings = load_settings()
    assert settings.api_key == key
    shown = [repr(settings), settings.describe(), str(transform.window_vars("2023-01"))]
    assert main(["settings"]) == 0
    shown.append(capsys.readouterr().out)
    assert "api key:    set" in shown[-1]
    assert not [text for text in shown if key in text]
