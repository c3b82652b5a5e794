"""Checkpoints: named by stage, keyed by what they depend on, built once, restored with their
Meltano state; and the ``checkpoint`` command behind ``make checkpoint``."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from classroom import cli
from classroom.checkpoints import (
    CHECKPOINTS_ENV,
    RECIPE,
    Checkpoint,
    CheckpointError,
    build_checkpoint,
    checkpoint_key,
    find_deliveries,
    restore_stage,
    stage_name,
)
from classroom.exercises.workspace import EXERCISES_ENV, workspace
from hdb_elt.extract_load import latest_delivery_counts, run_extract_load
from hdb_elt.settings import REPO_ROOT, stage_settings, temporary_environ
from hdb_elt.warehouse import connect

WINDOW = ("2023-01", "2023-02")


@pytest.mark.parametrize(
    ("value", "stage"),
    [
        ("transform", "03_transform"),
        ("03", "03_transform"),
        ("3", "03_transform"),
        ("03_transform", "03_transform"),
        ("extract-load", "01_extract_load"),
        ("Report", "05_report"),
    ],
)
def test_a_stage_is_named_by_its_name_or_number(value: str, stage: str) -> None:
    assert stage_name(value) == stage


def test_an_unknown_stage_is_refused_with_the_choices() -> None:
    with pytest.raises(CheckpointError, match="expected one of extract_load, validate, transform"):
        stage_name("transfrom")


def test_the_key_changes_with_the_stage_the_months_and_the_deliveries(tmp_path: Path) -> None:
    for month in WINDOW:
        (tmp_path / f"resale-flat-prices-{month}.csv").write_text(f"month\n{month}\n")
    key = checkpoint_key("03_transform", list(WINDOW), tmp_path)
    assert key == checkpoint_key("03_transform", list(WINDOW), tmp_path)
    assert key != checkpoint_key("02_validate", list(WINDOW), tmp_path)
    assert key != checkpoint_key("03_transform", ["2023-01"], tmp_path)
    (tmp_path / "resale-flat-prices-2023-02.csv").write_text("month\n2023-02\n2023-02\n")
    assert key != checkpoint_key("03_transform", list(WINDOW), tmp_path)


def test_every_path_of_the_recipe_exists() -> None:
    # A path that is gone (a module moved into a package) would silently leave the key.
    assert [path for path in RECIPE if not (REPO_ROOT / path).exists()] == []


def test_missing_deliveries_say_where_they_were_looked_for_and_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as raised:
        find_deliveries(["1999-01", "1999-02"], tmp_path)
    message = str(raised.value)
    assert "resale-flat-prices-1999-01.csv" in message and str(tmp_path) in message
    assert "make data" in message


def test_a_checkpoint_keeps_its_warehouse_state_and_dbt_files_in_its_folder(tmp_path: Path) -> None:
    checkpoint = Checkpoint(tmp_path / "cp", "02_validate", "2023-01", "2023-02")
    assert checkpoint.warehouse_path == tmp_path / "cp" / "warehouse" / "hdb_resale.duckdb"
    assert checkpoint.tool_env() == {
        "MELTANO_STATE_BACKEND_URI": (tmp_path / "cp" / "meltano-state").as_uri(),
        "DBT_TARGET_PATH": str(tmp_path / "cp" / "dbt" / "target"),
        "DBT_LOG_PATH": str(tmp_path / "cp" / "dbt" / "logs"),
    }


def test_the_tool_environment_is_put_back(monkeypatch) -> None:
    monkeypatch.setenv("DBT_TARGET_PATH", "before")
    monkeypatch.delenv("DBT_LOG_PATH", raising=False)
    with temporary_environ({"DBT_TARGET_PATH": "during", "DBT_LOG_PATH": "during"}):
        assert os.environ["DBT_TARGET_PATH"] == os.environ["DBT_LOG_PATH"] == "during"
    assert os.environ["DBT_TARGET_PATH"] == "before"
    assert "DBT_LOG_PATH" not in os.environ


def test_the_command_without_a_target_lists_the_choices(capsys) -> None:
    assert cli.main(["checkpoint"]) == 2
    out = capsys.readouterr().out
    assert "make checkpoint STAGE=<stage>" in out and "01_add_a_validation_rule" in out


def test_the_command_refuses_an_unknown_exercise(capsys) -> None:
    assert cli.main(["checkpoint", "--exercise", "42"]) == 1
    assert "'42' is not an exercise" in capsys.readouterr().err


# --- building and restoring (slow: the stage notebooks run) -----------------------------------


@pytest.fixture(scope="module")
def cache(tmp_path_factory, shared_monthly: Path) -> Iterator[Path]:
    """The session's checkpoint cache (shared with tests/test_exercises.py), reference data."""
    folder = tmp_path_factory.getbasetemp() / "checkpoints"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CHECKPOINTS_ENV, str(folder))
        patch.setenv(EXERCISES_ENV, str(tmp_path_factory.mktemp("exercises")))
        patch.setenv("HDB_RESALE_DATA_DIR", str(shared_monthly))
        yield folder


@pytest.mark.slow
def test_a_checkpoint_is_built_once_then_reused(cache: Path, shared_monthly: Path) -> None:
    checkpoint = build_checkpoint("transform", *WINDOW)
    assert checkpoint.path.parent == cache
    assert checkpoint.info["stages"] == ["01_extract_load", "02_validate", "03_transform"]
    assert checkpoint.info["raw_rows"] == {"2023-01": 2_552, "2023-02": 1_837}
    assert sorted(p.name for p in checkpoint.runs_dir.glob("*.ipynb")) == [
        "01_extract_load.ipynb",
        "02_validate.ipynb",
        "03_transform.ipynb",
    ]
    assert checkpoint.meltano_state()["singer_state"]["bookmarks"]
    built = (checkpoint.path / "checkpoint.json").stat().st_mtime
    started = time.perf_counter()
    again = build_checkpoint("03", "2023-01", "2023-02")
    assert again == checkpoint
    assert (again.path / "checkpoint.json").stat().st_mtime == built
    assert time.perf_counter() - started < 5


@pytest.mark.slow
def test_a_half_built_checkpoint_is_built_again(cache: Path) -> None:
    checkpoint = build_checkpoint("transform", *WINDOW)
    (checkpoint.path / "checkpoint.json").unlink()  # as if the build had been interrupted
    (checkpoint.warehouse_path).unlink()
    rebuilt = build_checkpoint("transform", *WINDOW)
    assert rebuilt == checkpoint
    assert rebuilt.info["raw_rows"] == {"2023-01": 2_552, "2023-02": 1_837}


@pytest.mark.slow
def test_a_stage_is_restored_into_a_warehouse_with_its_meltano_state(
    cache: Path, tmp_path: Path, shared_monthly: Path
) -> None:
    warehouse = tmp_path / "warehouse" / "hdb_resale.duckdb"
    warehouse.parent.mkdir()
    warehouse.write_bytes(b"a learner's broken warehouse")
    settings = stage_settings(*WINDOW, warehouse, shared_monthly)
    checkpoint, backup = restore_stage(settings, "transform")
    assert backup == tmp_path / "warehouse" / "hdb_resale.before-checkpoint.duckdb"
    assert backup.read_bytes() == b"a learner's broken warehouse"
    assert latest_delivery_counts(warehouse) == checkpoint.info["raw_rows"]
    with connect(warehouse, read_only=True) as con:
        (facts,) = con.execute("select count(*) from marts.fct_resale_transactions").fetchone()
    assert facts == 2_552 + 1_837
    # Meltano's state came with it: nothing is loaded again.
    assert run_extract_load(settings).load_id is None


@pytest.mark.slow
def test_an_exercise_workspace_is_reset_by_the_command(cache: Path, capsys) -> None:
    ws = workspace("02", activate=False)
    learner_file = ws.dbt_project_dir / "models" / "marts" / "broken.sql"
    learner_file.write_text("select from nowhere")
    assert cli.main(["checkpoint", "--exercise", "02"]) == 0
    assert not learner_file.exists()
    assert (ws.dbt_project_dir / "models" / "marts" / "fct_resale_transactions.sql").is_file()
    assert "notebooks/exercises/02_add_a_dbt_model.ipynb" in capsys.readouterr().out
    # A fresh workspace carries Meltano's state for its warehouse: nothing new to load.
    with temporary_environ(ws.env()):
        assert run_extract_load(ws.settings).load_id is None
