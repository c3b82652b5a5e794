"""A planted API key, used for real (data.gov.sg stood in for on loopback), never shows up in
anything the pipeline writes: Meltano's log, the executed notebooks, dbt's logs and artifacts,
the warehouse, Meltano's system database and run folder, the report, printed output."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from fake_datagov import fake_datagov

from faults.support import delivery_name
from hdb_elt.extract_load import run_extract_load
from hdb_elt.settings import MELTANO_PROJECT_DIR, stage_settings
from hdb_elt.stage_notebooks import STAGES, run_stages

pytestmark = pytest.mark.slow

PLANTED = "planted-key-5c1e0b9d"


def files_holding(text: str, *folders: Path) -> list[str]:
    needle = text.encode()
    return [
        str(path)
        for folder in folders
        for path in folder.rglob("*")
        if path.is_file() and needle in path.read_bytes()
    ]


def test_a_planted_api_key_is_sent_and_never_written_anywhere(
    tool_dirs: Path, shared_monthly: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    with (shared_monthly / delivery_name("2023-01")).open(encoding="utf-8", newline="") as handle:
        january = list(csv.DictReader(handle))
    run_files = MELTANO_PROJECT_DIR / ".meltano" / "run"
    with fake_datagov({"2023-01": january}) as api:
        for name, value in {
            "DATA_GOV_SG_API_URL": api["url"],
            "DATA_GOV_SG_API_KEY": PLANTED,
            "HDB_WAREHOUSE_PATH": str(tmp_path / "warehouse" / "hdb_resale.duckdb"),
            "HDB_START_MONTH": "2023-01",
            "HDB_END_MONTH": "2023-01",
            "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
            "HDB_RESALE_SOURCE": "api",
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("HDB_RESALE_DATA_DIR", raising=False)
        settings = stage_settings()
        assert settings.source_mode == "api"

        runs = run_stages(settings, tmp_path / "run")  # every stage notebook, as make run
        assert [run.stage for run in runs] == list(STAGES)
        run_extract_load(settings, log_dir=tmp_path / "logs")  # with Meltano's log kept
        leftovers = files_holding(PLANTED, run_files)
    assert api["requests"] and all(
        r["headers"].get("x-api-key") == PLANTED for r in api["requests"]
    )

    assert (tmp_path / "logs" / "meltano.log").read_text()
    printed = capsys.readouterr()
    assert PLANTED not in printed.out + printed.err
    assert not leftovers, "Meltano left the key in its run folder"
    # tmp_path holds the warehouse (raw._source, audit), Meltano's system db, the executed
    # notebooks, Meltano's log and the report; tool_dirs dbt's logs and artifacts.
    assert not files_holding(PLANTED, tmp_path, tool_dirs)
