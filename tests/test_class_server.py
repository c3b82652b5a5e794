"""The class's server (``make class-server``), on a real PostgreSQL: its databases and roles, the
``.env`` lines it hands out, a learner who reads the marts and cannot write them, and the class's
Dagster instance keeping its runs in PostgreSQL.

The server is started once per session (tests/postgres_support.py); each test sets up a class
of its own name, so their databases and roles never meet.
"""

from __future__ import annotations

import io
import os
import subprocess
import uuid
from contextlib import closing
from pathlib import Path

import duckdb
import psycopg2
import pytest
from dagster import DagsterInstance, DagsterRunStatus, job, op
from dotenv import dotenv_values
from postgres_support import PostgresServer

from classroom.class_server import (
    ClassNames,
    ClassServerError,
    read_learners,
    run_class_server,
)
from classroom.cli import main as classroom_main
from classroom.doctor import check_class_dagster
from dagster_orchestration.constants import DAGSTER_CLASS_YAML, DAGSTER_YAML
from dagster_orchestration.home import ClassInstanceError, instance_yaml, prepare_home
from hdb_elt.settings import Lake
from hdb_elt.warehouse import open_lake

LEARNERS = ["alice", "bob"]


def env_lines(text: str, heading: str) -> dict[str, str]:
    """The settings printed under ``== <heading>``, read as a ``.env`` file is read."""
    block = text.split(f"== {heading}", 1)[1].split("\n\n", 1)[0].split("\n", 1)[1]
    return dict(dotenv_values(stream=io.StringIO(block)))


def set_up(server: PostgresServer, folder: Path, learners: list[str] = LEARNERS) -> tuple:
    """A class of a fresh name on the session's server; returns its names and the output."""
    names = ClassNames(f"c{uuid.uuid4().hex[:8]}")
    out = run_class_server(
        learners=learners,
        dsn=server.superuser_dsn,
        folder=folder,
        class_name=names.name,
        data_path=folder / "lake",
        dagster_url="http://127.0.0.1:3999",
    )
    return names, out


def pg(dsn: str, dbname: str | None = None):
    con = psycopg2.connect(
        dsn if dbname is None else psycopg2.extensions.make_dsn(dsn, dbname=dbname)
    )
    con.autocommit = True
    return con


def attach_lake(catalog: str, data_path: str, *, read_only: bool = False):
    """The lake as the pipeline and the notebooks open it (hdb_elt.warehouse)."""
    return open_lake(Lake(catalog, Path(data_path)), read_only=read_only)


def test_a_learner_name_that_cannot_be_a_role_is_refused(tmp_path: Path) -> None:
    assert read_learners("Alice, bob,alice", None) == ["alice", "bob"]
    (tmp_path / "class.txt").write_text("carol  # row 1\n\ndave\n")
    assert read_learners("bob", tmp_path / "class.txt") == ["bob", "carol", "dave"]
    for bad in ("1alice", "al-ice", "pipeline", "x" * 21):
        with pytest.raises(ClassServerError, match="cannot name a database role"):
            read_learners(bad, None)
    with pytest.raises(ClassServerError, match="names no TCP host"):
        run_class_server(learners=[], dsn="host=/var/run/postgresql user=postgres", folder=tmp_path)


def test_the_class_is_set_up_once_and_its_env_lines_connect(
    postgres_server: PostgresServer,
    tmp_path: Path,
) -> None:
    names, first = set_up(postgres_server, tmp_path)
    assert "Created now: role" in first and f"database {names.lake_db}" in first
    # The superuser's password is in no line handed out.
    assert postgres_server.password not in first
    for name in ("instructor", *LEARNERS):
        text = (tmp_path / "env" / f"{name}.env").read_text()
        assert postgres_server.password not in text
        assert (tmp_path / "env" / f"{name}.env").stat().st_mode & 0o077 == 0

    # Again, through the command line: nothing new, the same lines.
    argv = ["class-server", "--dsn", postgres_server.superuser_dsn, "--folder", str(tmp_path)]
    argv += ["--class-name", names.name, "--learners", ",".join(LEARNERS)]
    argv += ["--data-path", str(tmp_path / "lake"), "--dagster-url", "http://127.0.0.1:3999"]
    assert classroom_main(argv) == 0
    second = run_class_server(
        learners=LEARNERS,
        dsn=postgres_server.superuser_dsn,
        folder=tmp_path,
        class_name=names.name,
        data_path=tmp_path / "lake",
        dagster_url="http://127.0.0.1:3999",
    )
    assert "Created now: nothing, all was in place" in second
    assert second.split("\n\n", 1)[1] == first.split("\n\n", 1)[1]

    instructor = env_lines(first, "The instructor's .env")
    alice = env_lines(first, "alice's .env")
    # A shell reads the files handed out the same way (`set -a; source .env`).
    script = 'set -a; source "$1"; echo "$HDB_WAREHOUSE_CATALOG"'
    sourced = subprocess.run(
        ["bash", "-c", script, "-", str(tmp_path / "env" / "alice.env")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert sourced == alice["HDB_WAREHOUSE_CATALOG"] and "password=" in sourced
    assert alice["HDB_WAREHOUSE_DATA_PATH"] == str((tmp_path / "lake").resolve())
    assert "http://127.0.0.1:3999" in first.split("== alice's .env", 1)[1]

    # The pipeline's lines open both databases, and it may create tables in the catalog's.
    with closing(pg(instructor["HDB_WAREHOUSE_CATALOG"])) as con, con.cursor() as cur:
        cur.execute("create table pipeline_can_write (a int)")
        cur.execute("insert into pipeline_can_write values (1)")
    psycopg2.connect(instructor["DAGSTER_PG_URL"]).close()

    # A learner's line opens the catalog's database and reads its tables, and nothing more.
    with closing(pg(alice["HDB_WAREHOUSE_CATALOG"])) as con, con.cursor() as cur:
        cur.execute("select a from pipeline_can_write")
        assert cur.fetchall() == [(1,)]
        cur.execute("set default_transaction_read_only = off")  # a learner can; grants hold
        for statement in ("insert into pipeline_can_write values (2)", "create table t (a int)"):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute(statement)
    with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
        pg(alice["HDB_WAREHOUSE_CATALOG"], names.dagster_db)

    # A learner added later gets a role; those already there keep their passwords.
    third = run_class_server(
        learners=[*LEARNERS, "carol"],
        dsn=postgres_server.superuser_dsn,
        folder=tmp_path,
        class_name=names.name,
        data_path=tmp_path / "lake",
        dagster_url="http://127.0.0.1:3999",
    )
    assert f"Created now: role {names.learner('carol')}" in third
    assert env_lines(third, "alice's .env") == alice
    pg(env_lines(third, "carol's .env")["HDB_WAREHOUSE_CATALOG"]).close()


def test_a_learner_reads_the_marts_and_cannot_write_them(
    postgres_server: PostgresServer,
    tmp_path: Path,
) -> None:
    _, out = set_up(postgres_server, tmp_path)
    pipeline = env_lines(out, "The instructor's .env")
    alice = env_lines(out, "alice's .env")
    data_path = pipeline["HDB_WAREHOUSE_DATA_PATH"]
    # The pipeline's first attach creates the catalog (after the grants: default privileges).
    with attach_lake(pipeline["HDB_WAREHOUSE_CATALOG"], data_path) as con:
        con.execute("create schema marts")
        con.execute(
            "create table marts.fct_resale_transactions as "
            "select range as transaction_id, 500000 + range as resale_price from range(100)"
        )

    for read_only in (True, False):
        with attach_lake(alice["HDB_WAREHOUSE_CATALOG"], data_path, read_only=read_only) as con:
            rows = con.execute("select count(*) from marts.fct_resale_transactions").fetchone()
            assert rows == (100,)
            for statement in (
                "insert into marts.fct_resale_transactions values (100, 1)",
                "delete from marts.fct_resale_transactions",
                "update marts.fct_resale_transactions set resale_price = 1",
                "drop table marts.fct_resale_transactions",
                "create table marts.mine as select 1 as a",
            ):
                expected = "read-only" if read_only else "read-only transaction"
                with pytest.raises(duckdb.Error, match=expected):
                    con.execute(statement)

    # Even with PostgreSQL's read-only default switched off, the catalog refuses the learner.
    with closing(pg(alice["HDB_WAREHOUSE_CATALOG"])) as con, con.cursor() as cur:
        cur.execute("set default_transaction_read_only = off")
        cur.execute("select count(*) from ducklake_data_file")
        assert cur.fetchone()[0] >= 1
        for statement in ("delete from ducklake_data_file", "delete from ducklake_snapshot"):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="permission denied"):
                cur.execute(statement)

    with attach_lake(pipeline["HDB_WAREHOUSE_CATALOG"], data_path, read_only=True) as con:
        total = con.execute(
            "select count(*), sum(resale_price) from marts.fct_resale_transactions"
        ).fetchone()
    assert total == (100, sum(500000 + i for i in range(100)))


@op
def say_hello() -> str:
    return "hello"


@job
def hello_class() -> None:
    say_hello()


def test_the_class_instance_keeps_its_runs_in_postgres(
    postgres_server: PostgresServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, out = set_up(postgres_server, tmp_path, learners=[])
    pipeline = env_lines(out, "The instructor's .env")
    # Set here, so that the variable prepare_home sets is put back after the test.
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    laptop = {"HDB_WAREHOUSE_CATALOG": "", "DAGSTER_PG_URL": ""}
    assert instance_yaml(laptop) == DAGSTER_YAML
    with pytest.raises(ClassInstanceError, match="DAGSTER_PG_URL is not set"):
        instance_yaml({"HDB_WAREHOUSE_CATALOG": pipeline["HDB_WAREHOUSE_CATALOG"]})
    for name, value in pipeline.items():
        monkeypatch.setenv(name, value)
    home = prepare_home(tmp_path / "dagster_home")
    assert (home / "dagster.yaml").read_bytes() == DAGSTER_CLASS_YAML.read_bytes()

    with DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 3
        result = hello_class.execute_in_process(instance=instance)
        assert result.success

    # Read back from PostgreSQL itself, not through the instance that wrote it.
    with psycopg2.connect(pipeline["DAGSTER_PG_URL"]) as con, con.cursor() as cur:
        cur.execute("select status, pipeline_name from runs where run_id = %s", (result.run_id,))
        assert cur.fetchone() == ("SUCCESS", "hello_class")
        cur.execute("select count(*) from event_logs where run_id = %s", (result.run_id,))
        assert cur.fetchone()[0] > 0
    # And by another instance of the same settings (another learner's UI, the daemon).
    with DagsterInstance.from_config(str(prepare_home(tmp_path / "other_home"))) as other:
        run = other.get_run_by_id(result.run_id)
        assert run is not None and run.status == DagsterRunStatus.SUCCESS


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the server to the postgres user")
def test_a_folder_the_server_user_cannot_enter_is_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    with pytest.raises(ClassServerError, match=r"cannot enter .*locked \(mode 700\)"):
        run_class_server(learners=["alice"], folder=locked / "class", port=1)
    assert not (locked / "class").exists()


def test_the_doctor_checks_the_class_dagster_storage(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    _, out = set_up(postgres_server, tmp_path, learners=[])
    url = env_lines(out, "The instructor's .env")["DAGSTER_PG_URL"]
    assert check_class_dagster({"DAGSTER_PG_URL": url}).status == "ok"
    unset = check_class_dagster({"DAGSTER_PG_URL": ""})
    assert unset.status == "warn" and "class's Dagster UI" in unset.detail
    password = url.split(":")[2].split("@")[0]
    wrong = check_class_dagster({"DAGSTER_PG_URL": url.replace(password, "not-it")})
    assert wrong.status == "FAIL" and "password authentication failed" in wrong.detail
    assert "not-it" not in wrong.detail and password not in wrong.detail


def test_a_managed_servers_admin_role_sets_the_class_up_too(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """A managed PostgreSQL gives an admin role with CREATEROLE and CREATEDB, not a superuser."""
    admin = f"admin_{uuid.uuid4().hex[:8]}"
    postgres_server.psql(f"create role {admin} login createrole createdb password 'admin-pw'")
    dsn = postgres_server.dsn("postgres", user=admin, password="admin-pw")
    names = ClassNames(f"c{uuid.uuid4().hex[:8]}")
    out = run_class_server(
        learners=["alice"],
        dsn=dsn,
        folder=tmp_path,
        class_name=names.name,
        data_path=tmp_path / "lake",
    )
    pipeline = env_lines(out, "The instructor's .env")
    alice = env_lines(out, "alice's .env")
    with attach_lake(pipeline["HDB_WAREHOUSE_CATALOG"], str(tmp_path / "lake")) as con:
        con.execute("create schema marts")
        con.execute("create table marts.t as select 1 as a")
    with attach_lake(alice["HDB_WAREHOUSE_CATALOG"], str(tmp_path / "lake"), read_only=True) as con:
        assert con.execute("select a from marts.t").fetchall() == [(1,)]
    postgres_server.psql(f"alter role {admin} nocreaterole")
    with pytest.raises(ClassServerError, match="may not create roles and databases"):
        run_class_server(
            learners=[], dsn=dsn, folder=tmp_path, class_name=names.name, data_path=tmp_path
        )
