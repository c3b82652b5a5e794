"""A PostgreSQL server of the class's own: a data folder, started and stopped with Debian's
``initdb`` and ``pg_ctl``, listening on 127.0.0.1 only.

The shared class mode keeps two things in PostgreSQL: the DuckLake catalog of the warehouse and
Dagster's run, event and schedule storage. An instructor either points the class at a server
they already have, or lets ``python -m classroom class-server`` start this one. The tests start
one the same way, in a temporary folder.

PostgreSQL refuses to run as root; when this process is root (a container, CI), the server runs
as the ``postgres`` user that Debian's package creates, and its folder is handed to that user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 5433
HOST = "127.0.0.1"
SUPERUSER = "postgres"
SERVER_OS_USER = "postgres"


class PostgresNotInstalled(RuntimeError):
    """No ``initdb``/``pg_ctl`` on this machine."""


def server_bin_dir() -> Path:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``.

    ``PATH`` first, then Debian's versioned folders (``/usr/lib/postgresql/<N>/bin``), newest
    first: Debian puts only the client programs on ``PATH``.
    """
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).resolve().parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
        reverse=True,
    )
    if versions:
        return versions[0].parent
    raise PostgresNotInstalled(
        "PostgreSQL's server programs (initdb, pg_ctl) are not installed. "
        "Debian/Ubuntu: apt-get install postgresql. Or point the class at a server you already "
        "have (see README: A class on one shared warehouse)."
    )


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", SERVER_OS_USER, "--", *argv]


@dataclass(frozen=True)
class LocalPostgres:
    """A server whose files live in ``folder`` (its data in ``folder/data``, its log in
    ``folder/server.log``), listening on ``HOST:port`` with password authentication for
    everyone but the local superuser's socket."""

    folder: Path
    port: int = DEFAULT_PORT

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def log_file(self) -> Path:
        return self.folder / "server.log"

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(
            _as_server_user(argv), capture_output=True, text=True, check=False, cwd="/"
        )

    def _hand_over(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, SERVER_OS_USER, SERVER_OS_USER)
            self.folder.chmod(0o700)

    def initialise(self, superuser_password: str) -> bool:
        """Create the data folder if it has none; True if it was created now."""
        if (self.data_dir / "PG_VERSION").exists():
            return False
        self._hand_over()
        password_file = self.folder / ".initdb-password"
        password_file.write_text(superuser_password + "\n")
        if os.geteuid() == 0:
            shutil.chown(password_file, SERVER_OS_USER, SERVER_OS_USER)
        try:
            done = self._run(
                [
                    str(server_bin_dir() / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    "--auth-local=peer",
                    "--auth-host=scram-sha-256",
                    f"--pwfile={password_file}",
                    "--encoding=UTF8",
                    "--locale=C",
                ]
            )
        finally:
            password_file.unlink(missing_ok=True)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed in {self.data_dir}:\n{done.stderr.strip()}")
        return True

    def is_running(self) -> bool:
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        return (
            self._run(
                [str(server_bin_dir() / "pg_ctl"), "status", "-D", str(self.data_dir)]
            ).returncode
            == 0
        )

    def start(self, max_connections: int = 100) -> None:
        """Start the server (waits until it accepts connections); a no-op if it runs."""
        if self.is_running():
            return
        options = (
            f"-c listen_addresses={HOST} -c port={self.port} "
            f"-c unix_socket_directories={self.folder} -c max_connections={max_connections}"
        )
        done = self._run(
            [
                str(server_bin_dir() / "pg_ctl"),
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-o",
                options,
            ]
        )
        if done.returncode != 0:
            log = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise RuntimeError(
                f"PostgreSQL did not start on {HOST}:{self.port} (data in {self.data_dir}):\n"
                f"{done.stderr.strip()}\n{log}"
            )

    def stop(self) -> None:
        """Stop the server (fast shutdown); a no-op if it is not running."""
        if self.is_running():
            self._run(
                [
                    str(server_bin_dir() / "pg_ctl"),
                    "stop",
                    "-w",
                    "-m",
                    "fast",
                    "-D",
                    str(self.data_dir),
                ]
            )

    def dsn(self, user: str, password: str, dbname: str) -> str:
        """A libpq connection string for ``user`` on this server (what DuckLake and
        dagster-postgres are given)."""
        return f"host={HOST} port={self.port} user={user} password={password} dbname={dbname}"
