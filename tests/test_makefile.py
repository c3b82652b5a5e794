"""The words a user says: each make target the README names runs the command it promises.

`make -n` prints the recipe without running it, so these tests are quick; the commands
themselves are tested where they are implemented.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from hdb_elt.settings import REPO_ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def recipe(*words: str) -> str:
    """What `make <words>` would run, setup's recipe left out (it may be up to date or not)."""
    completed = subprocess.run(
        ["make", "-n", "-o", ".venv/.installed", *words],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return completed.stdout


def readme_targets() -> set[str]:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    return set(re.findall(r"`make ([a-z-]+)", readme))


def test_every_target_the_readme_names_exists() -> None:
    listed = subprocess.run(
        ["make", "help"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    targets = set(re.findall(r"make ([a-z-]+)", listed))
    assert readme_targets() <= targets, readme_targets() - targets


@pytest.mark.parametrize(
    ("words", "command"),
    [
        (["checkpoint", "STAGE=validate"], "-m classroom checkpoint --stage validate"),
        (
            ["checkpoint", "EXERCISE=01_add_a_validation_rule"],
            "-m classroom checkpoint --exercise 01_add_a_validation_rule",
        ),
        (["doctor"], "-m classroom doctor"),
        (["run"], "-m classroom run"),
        (["data"], "-m classroom download"),
        (["class-server", "LEARNERS=alice,bob"], "-m classroom class-server --learners alice,bob"),
    ],
)
def test_a_target_runs_its_command(words: list[str], command: str) -> None:
    assert command in recipe(*words)


def test_checkpoint_without_a_name_asks_for_one() -> None:
    assert re.search(r"-m classroom checkpoint\s*$", recipe("checkpoint"), re.MULTILINE)


def test_clean_keeps_the_deliveries_and_the_environment() -> None:
    removed = recipe("clean")
    for path in ("data/warehouse", "data/runs", "data/exercises", "data/checkpoints"):
        assert path in removed
    assert "data/raw" not in removed and ".venv" not in removed.replace("./.venv/*", "")
