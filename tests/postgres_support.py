"""A real PostgreSQL server for the shared class mode's tests, one per test session.

Use it through the fixture ``postgres_server`` (tests/conftest.py imports it, so every test
can ask for it): it starts Debian's PostgreSQL (``classroom.postgres_server.LocalPostgres``) on
127.0.0.1 in a fresh folder and stops it when the session ends. Without the server programs the
tests using it are skipped, except under CI (``CI`` set), where they fail: CI installs them.

The server runs as the ``postgres`` OS user when the tests run as root, so its folder is made
directly under the system's temporary folder (pytest's own ``tmp_path`` is under a root-only
folder the server could not enter).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from classroom.postgres_server import (
    HOST,
    SUPERUSER,
    LocalPostgres,
    PostgresNotInstalled,
    server_bin_dir,
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class PostgresServer:
    """A running server: its superuser's connection string, and a way to make databases."""

    server: LocalPostgres
    password: str
    created: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def superuser_dsn(self) -> str:
        """libpq connection string of the superuser, to the ``postgres`` database."""
        return self.server.dsn(SUPERUSER, self.password, "postgres")

    def dsn(self, dbname: str, user: str = SUPERUSER, password: str | None = None) -> str:
        """libpq connection string of ``user`` (the superuser by default) to ``dbname``."""
        return self.server.dsn(user, self.password if password is None else password, dbname)

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run ``sql`` as the superuser with ``psql`` (one statement at a time, outside any
        transaction, as CREATE DATABASE needs); return its output, raising on an error."""
        done = subprocess.run(
            [
                str(server_bin_dir() / "psql"),
                self.dsn(dbname),
                "-v",
                "ON_ERROR_STOP=1",
                "-Atc",
                sql,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql failed on {sql!r}:\n{done.stderr.strip()}")
        return done.stdout

    def create_database(self, prefix: str = "test") -> str:
        """A new, empty database of a unique name (``<prefix>_<hex>``), owned by the superuser;
        returns its name. Each test gets its own, so tests never see each other's catalogs."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self.psql(f'create database "{name}"')
        self.created.append(name)
        return name


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server on 127.0.0.1 for the whole session (skipped without one locally,
    required under CI)."""
    try:
        server_bin_dir()
    except PostgresNotInstalled as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} CI installs it (apt-get install postgresql).")
        pytest.skip(str(exc))
    folder = Path(tempfile.mkdtemp(prefix="hdb-postgres-"))
    password = uuid.uuid4().hex
    server = LocalPostgres(folder, free_port())
    server.initialise(password)
    server.start()
    try:
        yield PostgresServer(server, password)
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
