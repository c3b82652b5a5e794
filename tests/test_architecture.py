"""The three tiers and their one-way imports (see docs/architecture.md).

``hdb_elt`` (the stage library) sits below ``dagster_orchestration`` (the Dagster code
location), which sits below ``classroom`` (the tooling learners and instructors type). Imports
point down only, with no cycle among the project's modules, counting the imports written
inside functions too: a lazy import can make a cycle work at run time, but it is still a cycle
a reader has to untangle.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Lower tiers first: a package may import the ones before it, never the ones after.
TIERS = ("hdb_elt", "dagster_orchestration", "classroom")
# The Singer plugins are packages of their own, run in Meltano's virtual environments: they
# import none of the workbook's packages.
PLUGINS = {
    "tap_hdb_resale": ROOT / "meltano" / "tap-hdb-resale" / "tap_hdb_resale",
    "target_hdb_duckdb": ROOT / "meltano" / "target-hdb-duckdb" / "target_hdb_duckdb",
}
PACKAGES = {name: ROOT / name for name in TIERS} | PLUGINS
MAX_LINES = 600


def module_name(package: str, path: Path) -> str:
    parts = [package, *path.relative_to(PACKAGES[package]).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(package, path): path
        for package, folder in PACKAGES.items()
        for path in sorted(folder.rglob("*.py"))
    }


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports anywhere in its file (module level or not)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from package import module` imports the module; `from module import name` the module.
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    return {name: imported_modules(name, path, known) for name, path in modules.items()}


def package_of(module: str) -> str:
    return module.split(".")[0]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first repeated last), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_the_graph_sees_every_tier():
    # A walk that found nothing would pass the tests below for the wrong reason.
    graph = import_graph()
    assert {package_of(m) for m in graph} == set(PACKAGES)
    assert "hdb_elt.settings" in graph["dagster_orchestration.resources"]
    assert "dagster_orchestration.definitions" in graph["classroom.runner"]


def test_imports_point_down_the_tiers():
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        for target in targets
        if package_of(module) in TIERS
        and package_of(target) in TIERS
        and TIERS.index(package_of(target)) > TIERS.index(package_of(module))
    )
    assert not wrong, "imports pointing up a tier:\n" + "\n".join(wrong)


def test_the_plugins_import_no_workbook_package():
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        for target in targets
        if package_of(module) in PLUGINS and package_of(target) != package_of(module)
    )
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_module_is_longer_than_a_reader_can_hold(package):
    long = {
        str(path.relative_to(ROOT)): lines
        for path in PACKAGES[package].rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_readme_layout_names_every_top_level_folder():
    readme = (ROOT / "README.md").read_text()
    layout = readme.split("## Repository layout", 1)[1].split("\n## ", 1)[0]
    named = {
        line.split("`")[1].split("/")[0] for line in layout.splitlines() if line.startswith("| `")
    }
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    folders = {path.split("/")[0] for path in tracked if "/" in path}
    folders -= {".github"}  # nothing a learner opens
    assert named == folders


def test_the_architecture_note_names_every_module():
    note = (ROOT / "docs" / "architecture.md").read_text()
    missing = sorted(
        f"{package}/{path.relative_to(ROOT / package)}"
        for package in TIERS
        for path in (ROOT / package).rglob("*.py")
        if path.name not in ("__init__.py", "__main__.py")
        and path.parent.name not in ("exercises", "stages", "validation")
        and path.name not in note
    )
    assert not missing, f"docs/architecture.md does not name: {missing}"
