"""``python -m classroom class-server`` (``make class-server``): one PostgreSQL server for a
class, with the warehouse's catalog, Dagster's storage and a role for every learner.

It starts the class's own server (:class:`classroom.postgres_server.LocalPostgres`, in
``.class_server/postgres/``) or points at one the instructor already has (``--dsn``, or
``HDB_CLASS_SUPERUSER_DSN``: a superuser's libpq connection string, or a managed server's
admin role with CREATEROLE and CREATEDB), then, as that role:

- creates the databases ``<class>_lake`` (DuckLake's catalog: its ``ducklake_*`` tables, made
  by the pipeline's first ATTACH) and ``<class>_dagster`` (Dagster's runs, events, schedules),
  both owned by the pipeline's role ``<class>_pipeline``, the one role that writes them;
- gives each learner a role ``<class>_<learner>`` in the group ``<class>_learners``, which may
  read the catalog's tables (SELECT, also on the tables the pipeline creates later) and nothing
  else: no INSERT, UPDATE or DELETE, no new tables, no access to Dagster's database, and every
  transaction read-only;
- prints the lines the instructor and each learner put in their ``.env`` (also written to
  ``.class_server/env/``), never the superuser's password.

Running it again changes nothing but what is new (a learner added to the list). Passwords are
generated once and kept in ``.class_server/credentials.json`` (readable by its owner only), the
record from which the roles' passwords are set on every run.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import make_dsn, parse_dsn

from classroom.postgres_server import (
    DEFAULT_PORT,
    HOST,
    SERVER_OS_USER,
    SUPERUSER,
    LocalPostgres,
)
from dagster_orchestration.constants import DAGSTER_PG_URL_ENV
from hdb_elt.settings import (
    CATALOG_SETTING,
    DATA_PATH_SETTING,
    REPO_ROOT,
    display_path,
    environment,
)

DEFAULT_FOLDER = REPO_ROOT / ".class_server"
DEFAULT_CLASS = "hdb"
DEFAULT_DATA_PATH = REPO_ROOT / "data" / "lake"
SUPERUSER_DSN_ENV = "HDB_CLASS_SUPERUSER_DSN"

# A class's and a learner's name become parts of PostgreSQL role and database names.
NAME = re.compile(r"[a-z][a-z0-9_]{0,19}")
RESERVED = {"pipeline", "learners", "lake", "dagster"}


class ClassServerError(RuntimeError):
    """Something the instructor has to fix: a bad name, an unreachable server."""


@dataclass(frozen=True)
class ClassNames:
    """The names of a class's databases and roles on the server."""

    name: str = DEFAULT_CLASS

    @property
    def lake_db(self) -> str:
        return f"{self.name}_lake"

    @property
    def dagster_db(self) -> str:
        return f"{self.name}_dagster"

    @property
    def pipeline(self) -> str:
        return f"{self.name}_pipeline"

    @property
    def learners(self) -> str:
        return f"{self.name}_learners"

    def learner(self, learner: str) -> str:
        return f"{self.name}_{learner}"


def check_name(value: str, what: str) -> str:
    if not NAME.fullmatch(value) or value in RESERVED:
        raise ClassServerError(
            f"{what} {value!r} cannot name a database role: use 1 to 20 lowercase letters, "
            f"digits or _, starting with a letter, and none of {', '.join(sorted(RESERVED))}."
        )
    return value


def read_learners(names: str | None, file: Path | None) -> list[str]:
    """The learners named by ``--learners a,b`` and ``--learners-file`` (one a line, ``#``
    comments), in order, each once."""
    given = [n.strip() for n in (names or "").split(",")]
    if file is not None:
        if not file.is_file():
            raise ClassServerError(f"No learners file at {file}.")
        lines = file.read_text(encoding="utf-8").splitlines()
        given += [line.split("#", 1)[0].strip() for line in lines]
    learners = [check_name(n.lower(), "The learner name") for n in given if n]
    return list(dict.fromkeys(learners))


@dataclass
class Credentials:
    """The passwords this command generated, kept between runs (``credentials.json``)."""

    path: Path
    superuser_password: str | None = None
    roles: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Credentials:
        if not path.exists():
            return cls(path)
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(path, data.get("superuser_password"), dict(data.get("roles", {})))

    def password(self, role: str) -> str:
        return self.roles.setdefault(role, new_password())

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {"superuser_password": self.superuser_password, "roles": self.roles}
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2)
        self.path.chmod(0o600)


def new_password() -> str:
    # URL-safe characters only: the same password goes into a libpq string and a URL unquoted.
    return secrets.token_urlsafe(18)


@dataclass
class ClassSetup:
    """What the command set up, and the ``.env`` lines it hands out."""

    host: str
    port: int
    names: ClassNames
    data_path: Path
    dagster_url: str
    pipeline_password: str
    learner_passwords: dict[str, str]
    created: list[str] = field(default_factory=list)

    def catalog_dsn(self, user: str, password: str) -> str:
        # Quoted: the value has spaces, and a shell's `source .env` must read it whole too.
        return (
            f"'host={self.host} port={self.port} dbname={self.names.lake_db} "
            f"user={user} password={password}'"
        )

    def dagster_pg_url(self) -> str:
        return (
            f"postgresql://{self.names.pipeline}:{self.pipeline_password}@{self.host}:"
            f"{self.port}/{self.names.dagster_db}"
        )

    def instructor_env(self) -> str:
        catalog = self.catalog_dsn(self.names.pipeline, self.pipeline_password)
        return "\n".join(
            [
                "# The class's pipeline: writes the shared warehouse, runs the class's Dagster.",
                "# Keep it private: it can change the marts.",
                f"{CATALOG_SETTING}={catalog}",
                f"{DATA_PATH_SETTING}={self.data_path}",
                f"{DAGSTER_PG_URL_ENV}={self.dagster_pg_url()}",
            ]
        )

    def learner_env(self, learner: str) -> str:
        role = self.names.learner(learner)
        return "\n".join(
            [
                f"# {learner}: reads the class's shared warehouse (role {role}, read-only).",
                f"# Launch runs in the class's Dagster UI: {self.dagster_url}",
                f"{CATALOG_SETTING}={self.catalog_dsn(role, self.learner_passwords[learner])}",
                f"{DATA_PATH_SETTING}={self.data_path}",
            ]
        )


def check_server_can_enter(folder: Path) -> None:
    """As root, the server runs as the ``postgres`` user: it must be able to reach ``folder``."""
    if os.geteuid() != 0:
        return
    for parent in folder.resolve().parents:
        if parent.exists() and not parent.stat().st_mode & 0o001:
            raise ClassServerError(
                f"PostgreSQL runs as the {SERVER_OS_USER} user, which cannot enter {parent} "
                f"(mode {parent.stat().st_mode & 0o777:o}), so it cannot keep its data in "
                f"{folder}. Use --folder in a place it can reach (/srv/hdb-class, /var/tmp/...)."
            )


def superuser_dsn(
    dsn: str | None, folder: Path, port: int, credentials: Credentials
) -> tuple[str, str | None]:
    """A superuser's connection string, and what was done to get it (a started server)."""
    if dsn:
        return dsn, None
    server = LocalPostgres(folder / "postgres", port)
    check_server_can_enter(folder)
    if credentials.superuser_password is None:
        credentials.superuser_password = new_password()
    try:
        created = server.initialise(credentials.superuser_password)
        credentials.save()  # before anything else can fail: the password of a new server
        was_running = server.is_running()
        server.start()
    except RuntimeError as exc:  # initdb's or pg_ctl's own words, with the server's log
        raise ClassServerError(str(exc)) from None
    done = "created and started" if created else ("running" if was_running else "started")
    note = (
        f"PostgreSQL {done} on {HOST}:{port} (data in {display_path(server.data_dir)}, log in "
        f"{display_path(server.log_file)}; the superuser {SUPERUSER}'s password is in "
        f"{display_path(credentials.path)})"
    )
    return server.dsn(SUPERUSER, credentials.superuser_password, "postgres"), note


def connect(dsn: str, dbname: str | None = None):
    try:
        con = psycopg2.connect(make_dsn(dsn, dbname=dbname) if dbname else dsn)
    except psycopg2.OperationalError as exc:
        where = {k: v for k, v in parse_dsn(dsn).items() if k in ("host", "port", "dbname", "user")}
        raise ClassServerError(f"Cannot connect to PostgreSQL ({where}): {exc}".strip()) from exc
    con.autocommit = True
    return con


def ensure_role(cur, role: str, password: str, *, login: bool = True) -> bool:
    """Create ``role`` if missing; set its password to ours. True if created now."""
    cur.execute("select 1 from pg_roles where rolname = %s", (role,))
    created = cur.fetchone() is None
    if created:
        cur.execute(sql.SQL("create role {}").format(sql.Identifier(role)))
    if login:
        cur.execute(
            sql.SQL("alter role {} with login password {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
    else:
        cur.execute(sql.SQL("alter role {} with nologin").format(sql.Identifier(role)))
    return created


def ensure_database(cur, dbname: str, owner: str) -> bool:
    """Create ``dbname`` owned by ``owner`` if missing (else make ``owner`` its owner)."""
    cur.execute("select 1 from pg_database where datname = %s", (dbname,))
    created = cur.fetchone() is None
    statement = "create database {} owner {}" if created else "alter database {} owner to {}"
    cur.execute(sql.SQL(statement).format(sql.Identifier(dbname), sql.Identifier(owner)))
    return created


def set_up_class(
    dsn: str,
    names: ClassNames,
    learners: list[str],
    credentials: Credentials,
    data_path: Path,
    dagster_url: str,
) -> ClassSetup:
    """Databases, roles and grants on the server ``dsn`` (a superuser's); idempotent."""
    host = parse_dsn(dsn).get("host", "")
    if not host or host.startswith("/"):
        raise ClassServerError(
            "The connection string names no TCP host (host=<name or address>): the lines handed "
            "out must reach the server over the network, not through a local socket."
        )
    ident = sql.Identifier
    created: list[str] = []
    con = connect(dsn)
    try:
        with con.cursor() as cur:
            cur.execute(
                "select rolsuper, rolcreaterole and rolcreatedb from pg_roles "
                "where rolname = current_user"
            )
            superuser, admin = cur.fetchone() or (False, False)
            if not (superuser or admin):
                raise ClassServerError(
                    "The connection string's role may not create roles and databases: log in "
                    "as a superuser, or (a managed PostgreSQL) its admin role with CREATEROLE "
                    "and CREATEDB."
                )
            if ensure_role(cur, names.pipeline, credentials.password(names.pipeline)):
                created.append(f"role {names.pipeline}")
            if not superuser:
                # A managed server's admin is no superuser: to make the pipeline's role own
                # databases and set its default privileges, it must be a member of that role.
                cur.execute(sql.SQL("grant {} to current_user").format(ident(names.pipeline)))
            if ensure_role(cur, names.learners, "", login=False):
                created.append(f"role {names.learners}")
            for learner in learners:
                role = names.learner(learner)
                if ensure_role(cur, role, credentials.password(role)):
                    created.append(f"role {role}")
                cur.execute(sql.SQL("grant {} to {}").format(ident(names.learners), ident(role)))
                # Belt and braces: even a grant given by mistake cannot make a learner write.
                cur.execute(
                    sql.SQL("alter role {} set default_transaction_read_only = on").format(
                        ident(role)
                    )
                )
            for dbname in (names.lake_db, names.dagster_db):
                if ensure_database(cur, dbname, names.pipeline):
                    created.append(f"database {dbname}")
                cur.execute(sql.SQL("revoke all on database {} from public").format(ident(dbname)))
            cur.execute(
                sql.SQL("grant connect on database {} to {}").format(
                    ident(names.lake_db), ident(names.learners)
                )
            )
    finally:
        con.close()
    credentials.save()
    # In the catalog's database: learners read every table the pipeline has made or will make
    # (DuckLake creates its ducklake_* tables at the first ATTACH), and create none.
    lake = connect(dsn, names.lake_db)
    try:
        with lake.cursor() as cur:
            cur.execute("revoke create on schema public from public")
            cur.execute(sql.SQL("grant usage on schema public to {}").format(ident(names.learners)))
            cur.execute(
                sql.SQL("grant select on all tables in schema public to {}").format(
                    ident(names.learners)
                )
            )
            cur.execute(
                sql.SQL(
                    "alter default privileges for role {} in schema public "
                    "grant select on tables to {}"
                ).format(ident(names.pipeline), ident(names.learners))
            )
    finally:
        lake.close()
    data_path.mkdir(parents=True, exist_ok=True)
    info = parse_dsn(dsn)
    return ClassSetup(
        host=host,
        port=int(info.get("port", 5432)),
        names=names,
        data_path=data_path.resolve(),
        dagster_url=dagster_url,
        pipeline_password=credentials.roles[names.pipeline],
        learner_passwords={n: credentials.roles[names.learner(n)] for n in learners},
        created=created,
    )


def write_env_files(setup: ClassSetup, folder: Path) -> Path:
    """The ``.env`` lines as files to hand out: ``<folder>/env/<learner>.env`` and
    ``instructor.env``, readable by their owner only."""
    out = folder / "env"
    out.mkdir(parents=True, exist_ok=True)
    files = {"instructor": setup.instructor_env()}
    files |= {learner: setup.learner_env(learner) for learner in setup.learner_passwords}
    for name, text in files.items():
        path = out / f"{name}.env"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    return out


def stop_local(folder: Path, port: int) -> str:
    server = LocalPostgres(folder / "postgres", port)
    if not server.is_running():
        return f"No class server runs in {display_path(server.folder)}."
    server.stop()
    return f"Stopped the class server in {display_path(server.folder)}."


def run_class_server(
    *,
    learners: list[str],
    dsn: str | None = None,
    folder: Path = DEFAULT_FOLDER,
    port: int = DEFAULT_PORT,
    class_name: str = DEFAULT_CLASS,
    data_path: Path | None = None,
    dagster_url: str | None = None,
) -> str:
    """Set the class up (see the module's docstring) and return what to print."""
    env = environment()
    names = ClassNames(check_name(class_name, "The class name"))
    dsn = dsn or env.get(SUPERUSER_DSN_ENV, "").strip() or None
    if data_path is None:
        configured = env.get(DATA_PATH_SETTING, "").strip()
        data_path = Path(configured) if configured else DEFAULT_DATA_PATH
    if not data_path.is_absolute():
        data_path = REPO_ROOT / data_path
    if dagster_url is None:
        dagster_url = f"http://127.0.0.1:{env.get('DAGSTER_PORT', '3000')}"
    credentials = Credentials.load(folder / "credentials.json")
    dsn, started = superuser_dsn(dsn, folder, port, credentials)
    setup = set_up_class(dsn, names, learners, credentials, data_path, dagster_url)
    env_folder = write_env_files(setup, folder)
    lines = [started] if started else [f"PostgreSQL at {setup.host}:{setup.port} (given)"]
    lines += [
        f"Databases: {names.lake_db} (the warehouse's DuckLake catalog), {names.dagster_db} "
        f"(Dagster's runs, events, schedules), owned by {names.pipeline}, the pipeline's role.",
        f"Learners ({names.learners}, read-only): "
        + (", ".join(names.learner(n) for n in learners) or "none yet (--learners a,b)"),
        "Created now: " + (", ".join(setup.created) or "nothing, all was in place"),
        f"The lake's data files: {setup.data_path}/ (learners need read access to it)",
        "",
        "== The instructor's .env (then `make dev`: the class's Dagster UI)",
        setup.instructor_env(),
    ]
    for learner in learners:
        lines += ["", f"== {learner}'s .env", setup.learner_env(learner)]
    lines += ["", f"The same lines, one file each: {display_path(env_folder)}/"]
    return "\n".join(lines)
