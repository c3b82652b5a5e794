"""The pins live in pyproject.toml; everything else that installs packages must agree with it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]


def pins(requirements: list[str]) -> dict[str, str]:
    out = {}
    for line in requirements:
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{line!r} is not an exact pin"
        out[req.name.lower()] = specs[0].version
    return out


def project_pins() -> dict[str, str]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    return pins(data["project"]["dependencies"])


def lock_pins() -> dict[str, str]:
    lines = (REPO / "requirements.lock").read_text().splitlines()
    return pins([ln for ln in lines if ln and not ln.startswith(("#", " ", "-"))])


def conda_pip_section() -> list[str]:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(sections) == 1, "environment.yml needs exactly one pip section"
    return sections[0]


def test_every_direct_dependency_is_pinned_exactly() -> None:
    assert project_pins()  # pins() asserts each one is ==


def test_dbt_core_stays_below_1_12() -> None:
    major, minor, *_ = (int(p) for p in project_pins()["dbt-core"].split("."))
    assert (major, minor) < (1, 12)


def test_lock_holds_the_same_versions_as_pyproject() -> None:
    lock = lock_pins()
    mismatched = {n: (v, lock.get(n)) for n, v in project_pins().items() if lock.get(n) != v}
    assert not mismatched, f"pyproject pin vs requirements.lock: {mismatched}"


def test_environment_yml_mirrors_pyproject() -> None:
    section = conda_pip_section()
    assert "-r requirements.lock" in section
    conda = pins([ln for ln in section if not ln.startswith("-")])
    assert conda == project_pins()


def test_environment_yml_python_satisfies_requires_python() -> None:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    version = re.sub(r"^python\s*=*", "", python)
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    from packaging.specifiers import SpecifierSet

    assert version + ".0" in SpecifierSet(requires)


def test_plugins_pin_the_same_shared_libraries() -> None:
    ours = project_pins()
    for plugin in ("tap-hdb-resale", "target-hdb-duckdb"):
        data = tomllib.loads((REPO / "meltano" / plugin / "pyproject.toml").read_text())
        for name, version in pins(data["project"]["dependencies"]).items():
            assert ours.get(name) == version, (
                f"{plugin} pins {name}=={version}, project {ours.get(name)}"
            )


def overridden_away() -> set[str]:
    """Packages requirements-overrides.txt removes (a marker that is never true)."""
    lines = (REPO / "requirements-overrides.txt").read_text().splitlines()
    return {
        Requirement(ln).name.lower()
        for ln in lines
        if ln.strip() and not ln.startswith("#") and "never" in ln
    }


def test_the_lock_leaves_out_what_the_overrides_remove() -> None:
    removed = overridden_away()
    assert removed == {"rfc3987-syntax"}
    assert not removed & set(lock_pins())
    assert "lark" not in lock_pins()  # needed by rfc3987-syntax alone


def test_make_setup_installs_without_rfc3987_syntax_and_jupyter_still_validates() -> None:
    import importlib.util
    import sys

    if Path(sys.prefix).resolve() != (REPO / ".venv").resolve():
        pytest.skip("not the environment make setup installs")
    assert importlib.util.find_spec("rfc3987_syntax") is None
    from jupyter_events.validators import validate_schema  # JupyterLab's event schemas

    assert callable(validate_schema)
