"""``make doctor``: each check on this machine, and each failure it must catch (produced for
real where that is cheap, monkeypatched where it is not)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from classroom import doctor
from classroom.doctor import FAIL, OK, WARN, Check
from hdb_elt.settings import REPO_ROOT, load_settings
from hdb_elt.warehouse import ensure_warehouse

HOLD = (
    "import sys, time, duckdb\n"
    "con = duckdb.connect(sys.argv[1])\n"
    "print('holding', flush=True)\n"
    "time.sleep(600)\n"
)


def settings_for(tmp_path: Path, data_dir: Path | None, **extra: str):
    values = {"HDB_WAREHOUSE_PATH": str(tmp_path / "w" / "w.duckdb"), **extra}
    if data_dir is not None:
        values["HDB_RESALE_DATA_DIR"] = str(data_dir)
    return load_settings(values, dotenv=False)


def deliveries(folder: Path, months: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for month in months:
        (folder / f"resale-flat-prices-{month}.csv").write_text("month\n" + month + "\n")
    return folder


# --- versions ------------------------------------------------------------------------------


def test_python_inside_and_outside_the_projects_range() -> None:
    assert doctor.check_python((3, 11, 7)).status == OK
    old = doctor.check_python((3, 10, 12))
    assert old.status == FAIL
    assert "3.10.12, but the project needs >=3.11,<3.14" in old.detail
    assert "make setup" in old.fix


def test_packages_at_their_pins_and_one_that_is_not() -> None:
    assert doctor.check_packages().status == OK
    pinned = doctor.project_pins()
    assert pinned["duckdb"] == "1.4.4" and pinned["dbt-core"] == "1.11.16"

    def version_of(name: str) -> str | None:
        return {"duckdb": "1.4.0", "dbt-core": None}.get(name, doctor.installed_version(name))

    found = doctor.check_packages(version_of)
    assert found.status == FAIL
    assert "dbt-core missing (pinned 1.11.16)" in found.detail
    assert "duckdb 1.4.0 (pinned 1.4.4)" in found.detail
    assert found.fix.startswith("run `make setup`")


def test_tools_are_installed_at_their_pins() -> None:
    for name, packages in (
        ("meltano", ("meltano",)),
        ("dbt", ("dbt-core", "dbt-duckdb")),
        ("dagster", ("dagster", "dagster-webserver", "dagstermill")),
    ):
        assert doctor.check_tool(name, packages).status == OK, name
    wrong = doctor.check_tool("dbt", ("dbt-core",), lambda name: "1.10.0")
    assert wrong.status == FAIL and "dbt-core 1.10.0 (pinned 1.11.16)" in wrong.detail


def test_a_tool_missing_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "_executable", lambda name: None)
    missing = doctor.check_tool("dagster", ("dagster",))
    assert missing.status == FAIL
    assert "`dagster` is not installed in this environment" in missing.detail


# --- Meltano's plugins, the kernel, DuckDB ---------------------------------------------------


def test_meltanos_plugins_are_installed_with_their_pins() -> None:
    found = doctor.check_meltano_plugins()
    assert found.status == OK, found
    assert "tap-hdb-resale (singer-sdk 0.54.9" in found.detail
    assert "target-hdb-duckdb (duckdb 1.4.4" in found.detail


def test_a_plugin_not_installed(tmp_path: Path) -> None:
    found = doctor.check_meltano_plugins(tmp_path)  # a Meltano project with no .meltano/
    assert found.status == FAIL
    assert "tap-hdb-resale is not installed" in found.detail
    assert "meltano install" in found.fix


def test_the_notebooks_kernel_runs_this_environment() -> None:
    found = doctor.check_kernel()
    assert found.status == OK, found
    assert "'python3' runs" in found.detail


def test_a_kernel_that_cannot_import_the_project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "kernel_python", lambda kernel="python3": Path("/usr/bin/env"))
    found = doctor.check_kernel()
    assert found.status == FAIL and "cannot import the project" in found.detail
    monkeypatch.setattr(doctor, "kernel_python", lambda kernel="python3": 1 / 0)
    assert doctor.check_kernel().status == FAIL


def test_every_duckdb_opens_the_warehouse(tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    before = doctor.check_duckdb(warehouse)
    assert before.status == OK and "no warehouse" in before.detail
    ensure_warehouse(warehouse)
    found = doctor.check_duckdb(warehouse)
    assert found.status == OK, found
    assert "loader 1.4.4, dbt 1.4.4, notebooks 1.4.4: each opened" in found.detail


def test_a_duckdb_that_cannot_read_the_file(tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    warehouse.write_bytes(b"not a database" * 100)
    found = doctor.check_duckdb(warehouse, {"loader": Path(sys.executable)})
    assert found.status == FAIL
    assert "loader (duckdb 1.4.4) cannot open it" in found.detail
    assert "newer DuckDB" in found.fix


# --- the lock --------------------------------------------------------------------------------


def test_a_locked_warehouse_names_the_process(tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    assert doctor.check_lock(warehouse).status == OK  # nothing yet
    ensure_warehouse(warehouse)
    assert doctor.check_lock(warehouse).detail.endswith("is free")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(warehouse)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        found = doctor.check_lock(warehouse)
        assert found.status == FAIL
        assert f"is locked by process {holder.pid}" in found.detail
        assert f"`kill {holder.pid}`" in found.fix
        # The doctor's DuckDB check does not report the lock twice.
        assert doctor.check_duckdb(warehouse, {"dbt": Path(sys.executable)}).status == OK
    finally:
        holder.kill()
        holder.wait()
    with duckdb.connect(str(warehouse), read_only=True) as con:  # the doctor wrote nothing
        assert con.execute("select count(*) from raw.resale_flat_prices").fetchone() == (0,)


# --- data, disk ------------------------------------------------------------------------------


def test_a_folder_of_deliveries(tmp_path: Path) -> None:
    folder = deliveries(tmp_path / "in", ["2023-01", "2023-02"])
    found = doctor.check_data(settings_for(tmp_path, folder, HDB_END_MONTH="2023-02"))
    assert found == Check("data", OK, found.detail)
    assert "2 delivery file(s), one for each month of the window" in found.detail

    gaps = doctor.check_data(settings_for(tmp_path, folder, HDB_END_MONTH="2023-05"))
    assert gaps.status == WARN and "no file named for 3 month(s)" in gaps.detail

    empty = doctor.check_data(settings_for(tmp_path, deliveries(tmp_path / "none", [])))
    assert empty.status == FAIL and "no deliveries (*.csv, *.csv.gz)" in empty.detail


def test_a_delivery_changed_since_its_download(tmp_path: Path) -> None:
    folder = deliveries(tmp_path / "in", ["2023-01"])
    (folder / "manifest.json").write_text(
        '{"months": {"2023-01": {"file": "resale-flat-prices-2023-01.csv", "rows": 1, '
        '"sha256": "0000"}}}'
    )
    found = doctor.check_data(settings_for(tmp_path, folder, HDB_END_MONTH="2023-01"))
    assert found.status == WARN
    assert "resale-flat-prices-2023-01.csv changed since it was downloaded" in found.detail


def test_the_api_unreachable_and_reachable(tmp_path: Path) -> None:
    key = "planted-key-d0c7"
    settings = load_settings(
        {"HDB_WAREHOUSE_PATH": str(tmp_path / "w.duckdb"), "DATA_GOV_SG_API_KEY": key,
         "DATA_GOV_SG_API_URL": "http://127.0.0.1:9/api/action/datastore_search",
         "HDB_RESALE_SOURCE": "api"},
        dotenv=False,
    )  # fmt: skip
    down = doctor.check_data(settings)
    assert down.status == FAIL
    assert "the data.gov.sg API is not reachable (ConnectionError)" in down.detail
    assert "HDB_RESALE_DATA_DIR" in down.fix and "make data" in down.fix

    class Answer:
        def raise_for_status(self) -> None:
            pass

        def json(self) -> dict:
            return {"result": {"records": [], "total": 0}}

    asked: list[dict] = []
    up = doctor.check_data(settings, lambda *a, **k: asked.append(k) or Answer())
    assert up.status == OK
    assert asked[0]["headers"] == {"x-api-key": key} and asked[0]["timeout"] <= 10
    assert key not in doctor.render([down, up])


def test_disk_space_thresholds(tmp_path: Path) -> None:
    class Usage:
        def __init__(self, free: int) -> None:
            self.free = free

    assert doctor.check_disk(tmp_path / "not" / "yet").status == OK  # nearest existing folder
    assert doctor.check_disk(tmp_path, lambda p: Usage(50 * 1024**2)).status == FAIL
    low = doctor.check_disk(tmp_path, lambda p: Usage(600 * 1024**2))
    assert low.status == WARN and "make clean" in low.fix


# --- the table and the command ---------------------------------------------------------------


def test_the_table_shows_a_fix_under_each_problem() -> None:
    table = doctor.render(
        [Check("python", OK, "3.11.7"), Check("data", FAIL, "nothing to read", "set it")]
    )
    assert table.splitlines() == [
        "check   status  detail",
        "python  ok      3.11.7",
        "data    FAIL    nothing to read",
        "                fix: set it",
    ]


def test_bad_settings_are_a_finding_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HDB_START_MONTH", "2023-13")
    checks = doctor.run_checks()
    assert checks[-1].name == "settings" and checks[-1].status == FAIL
    assert "HDB_START_MONTH='2023-13'" in checks[-1].detail


@pytest.mark.slow
def test_doctor_command_exits_0_when_ready_and_1_on_a_failure(
    shared_monthly: Path, tmp_path: Path
) -> None:
    def doctor_command(**env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "classroom", "doctor"],
            cwd=REPO_ROOT,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("HDB_")},
                "HDB_WAREHOUSE_PATH": str(tmp_path / "w.duckdb"),
                **env,
            },
            capture_output=True,
            text=True,
            check=False,
        )

    ready = doctor_command(HDB_RESALE_DATA_DIR=str(shared_monthly))
    assert ready.returncode == 0, ready.stdout + ready.stderr
    assert ready.stdout.splitlines()[0].split() == ["check", "status", "detail"]
    assert ready.stdout.rstrip().endswith("Ready to run.")

    broken = doctor_command(HDB_RESALE_DATA_DIR=str(tmp_path))  # a folder with no deliveries
    assert broken.returncode == 1
    assert "data" in broken.stdout and "FAIL" in broken.stdout
    assert "1 check(s) failed: data." in broken.stdout
