"""The stage notebooks, run headless with papermill as `make run` and Dagster run them."""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb
import nbformat
import pandas as pd
import pytest
from dagster_support import copy_months, fact_counts, file_counts, mart_checksums
from jupyter_client.manager import start_new_kernel

from hdb_elt.settings import stage_settings
from hdb_elt.stage_notebooks import STAGES, StageFailed, run_stages, stage_parameters, stage_path

pytestmark = pytest.mark.slow


def settings_for(data_dir: Path, warehouse: Path, start: str, end: str):
    return stage_settings(start, end, warehouse, data_dir)


def outputs_text(notebook: Path) -> str:
    nb = nbformat.read(notebook, as_version=4)
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            parts.append(str(output.get("text", "")))
            parts.append(str(output.get("data", {}).get("text/plain", "")))
            parts.append(str(output.get("evalue", "")))
    return "\n".join(parts)


def test_a_non_default_window_runs_every_stage_and_only_that_window(
    shared_monthly: Path, tmp_path: Path
) -> None:
    settings = settings_for(shared_monthly, tmp_path / "w" / "w.duckdb", "2023-03", "2023-04")
    runs = run_stages(settings, tmp_path / "run")
    assert [r.stage for r in runs] == list(STAGES)
    expected = {m: n for m, n in file_counts(shared_monthly).items() if m in ("2023-03", "2023-04")}
    assert fact_counts(settings.warehouse_path) == expected
    extract = outputs_text(tmp_path / "run" / "01_extract_load.ipynb")
    assert "4,454 rows in 2 month(s)" in extract
    assert "window 2023-03..2023-04" in outputs_text(tmp_path / "run" / "02_validate.ipynb")
    report_dir = settings.warehouse_path.parent / "report"
    assert {p.suffix for p in report_dir.iterdir()} >= {".png", ".md"}
    assert "2023-03" in (report_dir / "summary.md").read_text()


def insert_delivery(warehouse: Path, rows: list[dict], source: str, load_id: str) -> None:
    """Append a delivery to raw as a loader other than ours might (the gate's second line)."""
    frame = pd.DataFrame(rows).assign(
        _source=source, _source_row=range(2, len(rows) + 2), _load_id=load_id
    )
    with duckdb.connect(str(warehouse)) as con:
        con.register("delivery", frame)
        con.execute(
            "insert into raw.resale_flat_prices by name "
            "select *, (select max(_loaded_at) from raw.resale_flat_prices) + interval 1 hour "
            "as _loaded_at from delivery"
        )


def shared_rows(shared_monthly: Path, month: str, n: int) -> list[dict]:
    with (shared_monthly / f"resale-flat-prices-{month}.csv").open(encoding="utf-8") as handle:
        return [row for _, row in zip(range(n), csv.DictReader(handle), strict=False)]


@pytest.mark.parametrize("problem", ["bad month", "missing column"])
def test_the_validate_notebook_stops_a_bad_delivery_and_the_marts_stay(
    shared_monthly: Path, tmp_path: Path, problem: str
) -> None:
    data = copy_months(shared_monthly, tmp_path / "in", ["2023-01"])
    settings = settings_for(data, tmp_path / "w" / "w.duckdb", "2023-01", "2023-01")
    run_stages(settings, tmp_path / "first")
    before = mart_checksums(settings.warehouse_path, ignore=())

    rows = shared_rows(shared_monthly, "2023-01", 20)
    if problem == "bad month":
        rows[4]["month"] = "2023-13"  # line 6 of the delivery
    else:
        rows = [{**row, "resale_price": None} for row in rows]
    insert_delivery(settings.warehouse_path, rows, "/elsewhere/resale-2023-01-fix.csv", "other")

    with pytest.raises(StageFailed) as failure:
        run_stages(settings, tmp_path / "second", stages=STAGES[1:])
    message = str(failure.value)
    assert failure.value.stage == "02_validate"
    assert "resale-2023-01-fix.csv line" in message
    if problem == "bad month":
        assert "line 6, column month" in message and "month_format" in message
    else:
        assert "column resale_price" in message
    assert not (tmp_path / "second" / "03_transform.ipynb").exists()
    assert mart_checksums(settings.warehouse_path, ignore=()) == before


def test_impossible_prices_are_quarantined_and_the_test_stage_reconciles(
    shared_monthly: Path, tmp_path: Path
) -> None:
    data = copy_months(shared_monthly, tmp_path / "in", ["2023-05"])
    path = data / "resale-flat-prices-2023-05.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    for line in (10, 20, 30, 40, 50):  # CSV lines (the header is line 1)
        fields = lines[line - 1].split(",")
        lines[line - 1] = ",".join([*fields[:-1], "1"])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    settings = settings_for(data, tmp_path / "w" / "w.duckdb", "2023-05", "2023-05")
    run_stages(settings, tmp_path / "run")  # the test stage raises if anything is off
    assert fact_counts(settings.warehouse_path) == {"2023-05": len(lines) - 1 - 5}
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        quarantined = con.execute(
            "select _source_row, rule from audit.quarantine order by 1"
        ).fetchall()
    assert quarantined == [(n, "resale_price_plausible") for n in (10, 20, 30, 40, 50)]
    assert "pass" in outputs_text(tmp_path / "run" / "04_test.ipynb")


def test_a_kernel_that_ran_every_notebook_does_not_block_the_next_run(
    shared_monthly: Path, tmp_path: Path
) -> None:
    data = copy_months(shared_monthly, tmp_path / "in", ["2023-02"])
    settings = settings_for(data, tmp_path / "w" / "w.duckdb", "2023-02", "2023-02")
    injected = "\n".join(f"{k} = {v!r}" for k, v in stage_parameters(settings).items())
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(stage_path(STAGES[0]).parent))
    try:
        for stage in STAGES:  # a learner steps through every notebook in one live kernel
            nb = nbformat.read(stage_path(stage), as_version=4)
            for cell in nb.cells:
                if cell.cell_type != "code":
                    continue
                code = cell.source
                if "parameters" in cell.metadata.get("tags", []):
                    code += "\n" + injected
                reply = client.execute_interactive(code, timeout=600, output_hook=lambda m: None)
                assert reply["content"]["status"] == "ok", (stage, code)
        # The kernel is still alive, holding whatever the notebooks left open.
        runs = run_stages(settings, tmp_path / "again")
        assert [r.stage for r in runs] == list(STAGES)
        assert fact_counts(settings.warehouse_path) == file_counts(data)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
