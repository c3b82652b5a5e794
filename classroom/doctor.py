"""``make doctor``: check everything a run needs before it runs, with a fix for each problem.

Each check is a small function returning a :class:`Check` (``ok``, ``warn`` or ``FAIL``, what
was found, what to do). :func:`main` prints them as a table and exits 1 if any check failed,
so ``make doctor && make run`` stops early with a reason instead of failing half-way.

The checks: the Python version; every pinned package at its pin; Meltano and its two plugins
installed; dbt; Dagster; the Jupyter kernel the notebooks name; that the DuckDB of the loader,
of dbt and of the notebooks can each open the warehouse; whether the warehouse is locked and
by whom; that the deliveries folder (or the data.gov.sg API) can be read; free disk space.
Nothing here writes to the warehouse or prints the API key.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata as metadata
import json
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import psycopg2
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from tap_hdb_resale.deliveries import find_deliveries

from dagster_orchestration.constants import DAGSTER_PG_URL_ENV
from hdb_elt.settings import (
    DATASET_ID,
    MELTANO_PROJECT_DIR,
    REPO_ROOT,
    Lake,
    Settings,
    SettingsError,
    display_path,
    environment,
    load_settings,
)
from hdb_elt.warehouse import (
    LAKE_ALIAS,
    WarehouseLockedError,
    WarehouseUnavailableError,
    open_lake,
    open_warehouse,
)

OK, WARN, FAIL = "ok", "warn", "FAIL"
PYPROJECT = REPO_ROOT / "pyproject.toml"
LOCKFILE = REPO_ROOT / "requirements.lock"
NOTEBOOK_KERNEL = "python3"  # the kernelspec every stage notebook names (hdb_elt.stage_notebooks)
PLUGINS = {
    # plugin: (folder under meltano/.meltano, the packages whose pins matter in its venv)
    "tap-hdb-resale": ("extractors", ("singer-sdk", "requests", "pyarrow")),
    "target-hdb-duckdb": ("loaders", ("duckdb", "pandas")),
}
DISK_FAIL_BYTES = 200 * 1024**2
DISK_WARN_BYTES = 1024**3
API_TIMEOUT_SECONDS = 5.0
SETUP_FIX = "run `make setup` (it installs the pinned versions; safe to repeat)"
# Opens the warehouse read-only with whatever DuckDB the interpreter has, and says which.
OPEN_PROBE = (
    "import sys, duckdb\n"
    "print(duckdb.__version__)\n"
    "if len(sys.argv) > 1:\n"
    "    con = duckdb.connect(sys.argv[1], read_only=True)\n"
    "    con.execute('select count(*) from raw._warehouse').fetchall()\n"
    "    con.close()\n"
)


@dataclass(frozen=True)
class Check:
    """One line of the doctor's table."""

    name: str
    status: str
    detail: str
    fix: str = ""

    @classmethod
    def failed(cls, name: str, problems: list[str], fix: str) -> Check:
        """A failed check listing every problem found, with the one fix for them."""
        return cls(name, FAIL, "; ".join(problems), fix)


# --- versions ------------------------------------------------------------------------------


def pins(lines: Iterable[str]) -> dict[str, str]:
    """Exact pins (``name==version``) among requirement ``lines`` as {normalised name: version}.

    Comments, blank lines, pip options and requirements that are not one exact pin are skipped.
    """
    found = {}
    for line in lines:
        try:
            requirement = Requirement(line.split("#", 1)[0].strip())
        except InvalidRequirement:
            continue
        specs = list(requirement.specifier)
        if len(specs) == 1 and specs[0].operator == "==":
            found[canonicalize_name(requirement.name)] = specs[0].version
    return found


def at_pin(found: str | None, pinned: str) -> bool:
    """Whether an installed version is the pinned one (as versions: ``2.0`` is ``2.0.0``)."""
    if found is None:
        return False
    try:
        return Version(found) == Version(pinned)
    except InvalidVersion:
        return found == pinned


def project_pins(pyproject: Path = PYPROJECT) -> dict[str, str]:
    return pins(tomllib.loads(pyproject.read_text())["project"]["dependencies"])


def lock_pins(lockfile: Path = LOCKFILE) -> dict[str, str]:
    return pins(lockfile.read_text().splitlines()) if lockfile.exists() else {}


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def mismatches(
    wanted: dict[str, str], version_of: Callable[[str], str | None] = installed_version
) -> list[str]:
    """``name installed X, pinned Y`` for every pin not met."""
    problems = []
    for name, pinned in sorted(wanted.items()):
        found = version_of(name)
        if not at_pin(found, pinned):
            problems.append(f"{name} {found or 'missing'} (pinned {pinned})")
    return problems


def check_python(version: tuple[int, ...] = tuple(sys.version_info[:3])) -> Check:
    required = tomllib.loads(PYPROJECT.read_text())["project"]["requires-python"]
    text = ".".join(map(str, version))
    if text in SpecifierSet(required):
        return Check("python", OK, f"{text} (the project needs {required})")
    return Check(
        "python",
        FAIL,
        f"{text}, but the project needs {required}",
        f"install a Python {required}, then `make setup PYTHON=python3.12` (for example)",
    )


def check_packages(version_of: Callable[[str], str | None] = installed_version) -> Check:
    direct, locked = project_pins(), lock_pins()
    problems = mismatches({**locked, **direct}, version_of)
    if not problems:
        return Check(
            "packages",
            OK,
            f"all {len(direct)} pins of pyproject.toml and {len(locked)} of requirements.lock "
            "installed at their versions",
        )
    shown = ", ".join(problems[:4]) + (
        f" and {len(problems) - 4} more" if len(problems) > 4 else ""
    )
    return Check("packages", FAIL, f"{len(problems)} not at their pin: {shown}", SETUP_FIX)


def _executable(name: str) -> Path | None:
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return beside
    found = shutil.which(name)
    return Path(found) if found else None


def check_tool(
    name: str,
    packages: tuple[str, ...],
    version_of: Callable[[str], str | None] = installed_version,
) -> Check:
    """An executable of this environment, and its packages at their pins."""
    executable = _executable(name)
    direct = project_pins()
    wanted = {canonicalize_name(p): direct.get(canonicalize_name(p), "") for p in packages}
    versions = ", ".join(f"{p} {version_of(p) or 'missing'}" for p in packages)
    if executable is None:
        return Check(name, FAIL, f"`{name}` is not installed in this environment", SETUP_FIX)
    problems = mismatches({p: v for p, v in wanted.items() if v}, version_of)
    if problems:
        return Check(name, FAIL, "not at the pinned version: " + ", ".join(problems), SETUP_FIX)
    return Check(name, OK, versions)


# --- Meltano's plugins, the kernel, DuckDB ---------------------------------------------------


def plugin_python(plugin: str, project: Path = MELTANO_PROJECT_DIR) -> Path:
    kind = PLUGINS[plugin][0]
    return project / ".meltano" / kind / plugin / "venv" / "bin" / "python"


def _shown(path: Path | str) -> str:
    """A path inside the repository relative to it (links not followed: .venv/bin/python)."""
    path = Path(path)
    try:
        return str(path.absolute().relative_to(REPO_ROOT))
    except ValueError:
        return display_path(path)


def _run_python(python: Path | str, code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), "-c", code, *args], capture_output=True, text=True, timeout=60, check=False
    )


def check_meltano_plugins(project: Path = MELTANO_PROJECT_DIR) -> Check:
    """Both plugins installed by `meltano install`, with their pinned packages."""
    found, problems = [], []
    for plugin, (_, packages) in PLUGINS.items():
        python = plugin_python(plugin, project)
        if not python.exists():
            problems.append(f"{plugin} is not installed ({display_path(python.parents[1])})")
            continue
        probe = _run_python(
            python,
            "import sys, importlib.metadata as m\n"
            "for p in sys.argv[1:]:\n"
            "    try: print(p, m.version(p))\n"
            "    except m.PackageNotFoundError: print(p, 'missing')\n",
            *packages,
        )
        versions = dict(line.split(" ", 1) for line in probe.stdout.splitlines() if " " in line)
        pinned = plugin_pins(plugin)
        wrong = [
            f"{p} {versions.get(p, 'missing')} (pinned {pinned[p]})"
            for p in packages
            if p in pinned and not at_pin(versions.get(p), pinned[p])
        ]
        if probe.returncode != 0 or wrong:
            problems.append(f"{plugin}: " + (", ".join(wrong) or probe.stderr.strip()[-200:]))
        else:
            found.append(f"{plugin} ({', '.join(f'{p} {versions[p]}' for p in packages)})")
    if problems:
        return Check.failed(
            "meltano plugins",
            problems,
            "run `make setup` (or `cd meltano && ../.venv/bin/meltano install`)",
        )
    return Check("meltano plugins", OK, "installed: " + ", ".join(found))


def plugin_pins(plugin: str) -> dict[str, str]:
    pyproject = MELTANO_PROJECT_DIR / plugin / "pyproject.toml"
    return pins(tomllib.loads(pyproject.read_text())["project"]["dependencies"])


def kernel_python(kernel: str = NOTEBOOK_KERNEL) -> Path:
    """The interpreter the notebooks' kernelspec starts (raises if the spec is missing)."""
    from jupyter_client.kernelspec import KernelSpecManager

    argv = KernelSpecManager().get_kernel_spec(kernel).argv
    # jupyter_client starts a spec saying "python" (ipykernel's own) with the interpreter of
    # the process launching it: papermill's, this environment's.
    version = sys.version_info
    if argv[0] in ("python", f"python{version[0]}", f"python{version[0]}.{version[1]}"):
        return Path(sys.executable)
    found = shutil.which(argv[0])
    return Path(found or argv[0])


def check_kernel(kernel: str = NOTEBOOK_KERNEL) -> Check:
    fix = (
        "run `make setup`; if a kernelspec of your own named python3 points elsewhere, "
        "remove it (`jupyter kernelspec list`)"
    )
    try:
        python = kernel_python(kernel)
    except Exception as error:  # NoSuchKernel, or Jupyter itself missing
        return Check("jupyter kernel", FAIL, f"kernel {kernel!r} not found: {error}", fix)
    probe = _run_python(python, "import hdb_elt, papermill, duckdb; print(duckdb.__version__)")
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["it did not start"])[-1]
        return Check(
            "jupyter kernel",
            FAIL,
            f"kernel {kernel!r} runs {_shown(python)}, which cannot import the project: {last}",
            fix,
        )
    return Check("jupyter kernel", OK, f"{kernel!r} runs {_shown(python)} (imports hdb_elt)")


def duckdb_users(project: Path = MELTANO_PROJECT_DIR) -> dict[str, Path]:
    """The interpreter whose DuckDB each component uses to open the warehouse."""
    users = {
        "loader": plugin_python("target-hdb-duckdb", project),
        "dbt": Path(sys.executable),  # dbt-duckdb imports this environment's duckdb
    }
    with contextlib.suppress(Exception):  # check_kernel reports it
        users["notebooks"] = kernel_python()
    return users


def check_duckdb(warehouse: Path, users: dict[str, Path] | None = None) -> Check:
    """Each component's DuckDB opens the warehouse (a file written by a newer DuckDB cannot
    be opened by an older one), read-only."""
    users = users if users is not None else duckdb_users()
    exists = warehouse.exists()
    versions, problems = [], []
    for user, python in users.items():
        if not Path(python).exists():
            problems.append(f"{user}: {_shown(python)} is missing")
            continue
        probe = _run_python(python, OPEN_PROBE, *([str(warehouse)] if exists else []))
        version = (probe.stdout.strip().splitlines() or ["?"])[0]
        versions.append(f"{user} {version}")
        if probe.returncode != 0:
            reason = (probe.stderr.strip().splitlines() or ["failed"])[-1]
            if "lock" in reason.lower():  # the lock check below says who holds it
                continue
            problems.append(f"{user} (duckdb {version}) cannot open it: {reason}")
    if problems:
        return Check.failed(
            "duckdb",
            problems,
            "run `make setup` so every component has the pinned duckdb; a warehouse written "
            "by a newer DuckDB cannot be read by an older one: rebuild it (`make clean run`)",
        )
    if len({v.split(" ", 1)[1] for v in versions}) > 1:
        return Check("duckdb", WARN, ", ".join(versions) + ": versions differ", SETUP_FIX)
    if not exists:
        return Check(
            "duckdb",
            OK,
            ", ".join(versions) + f"; no warehouse at {display_path(warehouse)} yet (a run "
            "creates it)",
        )
    return Check("duckdb", OK, ", ".join(versions) + f": each opened {display_path(warehouse)}")


def check_lake(lake: Lake) -> Check:
    """The shared warehouse: its catalog answers, and its data folder is there."""
    if not lake.data_path.is_dir():
        return Check(
            "warehouse",
            FAIL,
            f"HDB_WAREHOUSE_DATA_PATH={lake.data_path} is not a folder",
            "mount the class's shared folder there, or fix the path (your instructor's .env "
            "lines have it)",
        )
    try:
        with open_lake(lake, read_only=True) as con:
            snapshot = con.execute(
                f"select max(snapshot_id) from ducklake_snapshots('{LAKE_ALIAS}')"
            ).fetchone()[0]
    except FileNotFoundError:
        return Check("warehouse", OK, f"{lake.describe()}: empty (a run fills it)")
    except WarehouseUnavailableError as error:
        detail, _, fix = str(error).partition("\n")
        return Check("warehouse", FAIL, detail, fix)
    return Check("warehouse", OK, f"{lake.describe()}: reachable, at snapshot {snapshot}")


def check_class_dagster(env: dict[str, str] | None = None) -> Check:
    """The class's Dagster storage (the shared warehouse's runs are kept there): it answers."""
    url = environment(env).get(DAGSTER_PG_URL_ENV, "").strip()
    if not url:
        return Check(
            "dagster storage",
            WARN,
            f"{DAGSTER_PG_URL_ENV} is not set: runs go through the class's Dagster UI (as a "
            "learner's do)",
            f"instructors: add the {DAGSTER_PG_URL_ENV} line `make class-server` printed to .env",
        )
    where = url.rsplit("@", 1)[-1]  # host:port/database, never the password before it
    try:
        psycopg2.connect(url, connect_timeout=5).close()
    except psycopg2.Error as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return Check(
            "dagster storage",
            FAIL,
            f"the class's Dagster storage at {where} does not answer: {reason}",
            f"check {DAGSTER_PG_URL_ENV} (the instructor's line from `make class-server`), and "
            "that the class's PostgreSQL server runs",
        )
    return Check("dagster storage", OK, f"the class's Dagster instance in PostgreSQL at {where}")


def check_lock(warehouse: Path) -> Check:
    """Whether a run could write the warehouse now, and if not, who holds it."""

    if not warehouse.exists():
        return Check("warehouse lock", OK, f"no warehouse at {display_path(warehouse)} yet")
    try:
        open_warehouse(warehouse).close()
    except WarehouseLockedError as error:
        text = str(error)
        detail, _, fix = text.partition(": DuckDB lets one process write it at a time. ")
        return Check("warehouse lock", FAIL, detail, fix or text)
    return Check("warehouse lock", OK, f"{display_path(warehouse)} is free")


# --- data, disk ----------------------------------------------------------------------------


def _manifest_problems(folder: Path) -> list[str]:
    manifest = folder / "manifest.json"
    if not manifest.exists():
        return []
    problems = []
    for month, entry in sorted(json.loads(manifest.read_text()).get("months", {}).items()):
        if not entry.get("file"):
            continue
        path = folder / entry["file"]
        if not path.exists():
            problems.append(f"{entry['file']} is missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != entry.get("sha256"):
            problems.append(f"{entry['file']} changed since it was downloaded ({month})")
    return problems


def check_data(settings: Settings, get: Callable[..., object] | None = None) -> Check:
    if settings.data_dir is not None:
        folder = settings.data_dir
        files = find_deliveries(folder)
        unreadable = [p.name for p in files if not _readable(p)]
        if not files or unreadable:
            return Check(
                "data",
                FAIL,
                f"{display_path(folder)}: "
                + (
                    f"cannot read {', '.join(unreadable[:3])}"
                    if unreadable
                    else "no deliveries (*.csv, *.csv.gz)"
                ),
                "point HDB_RESALE_DATA_DIR at a folder of CSV deliveries, or run `make data`",
            )
        names = " ".join(p.name for p in files)
        missing = [str(m) for m in settings.months if str(m) not in names]
        problems = _manifest_problems(folder)
        detail = f"{settings.source_label}: {len(files)} delivery file(s)"
        if problems:
            return Check(
                "data",
                WARN,
                f"{detail}; manifest.json: {'; '.join(problems[:3])}",
                "download those months again (`make data`)",
            )
        if missing:
            return Check(
                "data",
                WARN,
                f"{detail}; no file named for {len(missing)} month(s) of the window "
                f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})",
                "fine if a multi-month file holds them; else `make data` fetches them",
            )
        return Check("data", OK, f"{detail}, one for each month of the window")
    return _check_api(settings, get)


def _readable(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            handle.read(1)
        return True
    except OSError:
        return False


def _check_api(settings: Settings, get: Callable[..., object] | None) -> Check:
    import requests

    get = get or requests.get
    headers = {"x-api-key": settings.api_key} if settings.api_key else {}
    try:
        response = get(
            settings.api_url,
            params={"resource_id": DATASET_ID, "limit": 1},
            headers=headers,
            timeout=API_TIMEOUT_SECONDS,
        )
        response.raise_for_status()
        response.json()["result"]
    except Exception as error:
        reason = type(error).__name__
        status = getattr(getattr(error, "response", None), "status_code", None)
        return Check(
            "data",
            FAIL,
            f"no deliveries folder set, and the data.gov.sg API is not reachable "
            f"({reason}{f', HTTP {status}' if status else ''})",
            "set HDB_RESALE_DATA_DIR to a folder of CSV deliveries (or run `make data` while "
            "online, which fills data/raw/)",
        )
    return Check("data", OK, f"the data.gov.sg API answers ({settings.api_url})")


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(path: Path, usage: Callable[[Path], object] = shutil.disk_usage) -> Check:
    where = _existing_parent(path)
    free = usage(where).free
    detail = f"{free / 1024**3:.1f} GB free at {display_path(where)}"
    fix = "free some space (`make clean` removes the warehouse, run records and build output)"
    if free < DISK_FAIL_BYTES:
        return Check("disk", FAIL, detail + f" (a run needs {DISK_FAIL_BYTES // 1024**2} MB)", fix)
    if free < DISK_WARN_BYTES:
        return Check("disk", WARN, detail + " (under 1 GB)", fix)
    return Check("disk", OK, detail)


# --- the table -----------------------------------------------------------------------------


def run_checks(settings: Settings | None = None) -> list[Check]:
    """Every check, in the order a run needs them."""
    checks = [
        check_python(),
        check_packages(),
        check_tool("meltano", ("meltano",)),
        check_meltano_plugins(),
        check_tool("dbt", ("dbt-core", "dbt-duckdb")),
        check_tool("dagster", ("dagster", "dagster-webserver", "dagstermill", "dagster-postgres")),
        check_kernel(),
    ]
    if settings is None:
        try:
            settings = load_settings()
        except SettingsError as error:
            checks.append(
                Check("settings", FAIL, str(error), "fix the variable (see .env.example)")
            )
            return checks
    checks.append(Check("settings", OK, settings.describe()))
    if settings.lake is not None:  # the shared warehouse: no file, no lock
        checks += [check_lake(settings.lake), check_class_dagster(), check_data(settings)]
        return checks
    checks += [
        check_duckdb(settings.warehouse_path),
        check_lock(settings.warehouse_path),
        check_data(settings),
        check_disk(settings.warehouse_path.parent),
    ]
    return checks


def render(checks: list[Check]) -> str:
    """The table: check, status, detail, and under a problem the fix."""
    width = max(len(c.name) for c in checks)
    lines = [f"{'check':<{width}}  {'status':<6}  detail"]
    for check in checks:
        lines.append(f"{check.name:<{width}}  {check.status:<6}  {check.detail}")
        if check.fix and check.status != OK:
            lines.append(f"{'':<{width}}  {'':<6}  fix: {check.fix}")
    return "\n".join(lines)


def main(settings: Settings | None = None) -> int:
    checks = run_checks(settings)
    print(render(checks))
    failed = [c.name for c in checks if c.status == FAIL]
    warned = [c.name for c in checks if c.status == WARN]
    if failed:
        print(f"\n{len(failed)} check(s) failed: {', '.join(failed)}. Fix them, then run again.")
        return 1
    print("\nReady to run" + (f" (with warnings: {', '.join(warned)})." if warned else "."))
    return 0
