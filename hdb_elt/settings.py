"""Settings for every stage, read from the environment in one place.

The same variable names are used by the package, Meltano, dbt, Dagster and the notebooks:

- ``HDB_RESALE_DATA_DIR``: a folder of CSV deliveries. Unset: ``data/raw/`` if it holds
  deliveries (``make data`` fills it), else the bundled 2023 snapshot in ``data/snapshot/``.
- ``HDB_RESALE_SOURCE``: ``files`` (the default, the folder above) or ``api`` (read the
  data.gov.sg API instead; the only way the network is used by a run).
- ``HDB_WAREHOUSE_PATH``: the DuckDB file (default ``data/warehouse/hdb_resale.duckdb``).
- ``HDB_WAREHOUSE_CATALOG`` / ``HDB_WAREHOUSE_DATA_PATH``: the shared class mode instead of the
  file: a DuckLake whose catalog is the PostgreSQL database this libpq connection string names,
  and whose Parquet files are in that shared folder. Unset (the default): the DuckDB file.
- ``HDB_START_MONTH`` / ``HDB_END_MONTH``: the window a run processes (``YYYY-MM``, from
  1990-01, the dataset's first month), default 2023-01 to 2023-12 so classroom numbers are
  reproducible.
- ``HDB_LOOKBACK_MONTHS``: API mode, months before the newest loaded one that are
  re-extracted on every run, because recent months keep filling up and get revised (default
  1). Files mode re-extracts a month only when its file's content changed.
- ``DATA_GOV_SG_API_KEY``: optional API key, only from the environment or a git-ignored ``.env``.

Relative paths are resolved against the repository root, so a notebook (which runs in
``notebooks/``), Dagster and ``make`` all mean the same file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values
from tap_hdb_resale.resources import CURRENT
from target_hdb_duckdb.lake import EXTENSION_DIRECTORY

from hdb_elt.months import FIRST_DATASET_MONTH, Month, MonthError

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "data"
DEFAULT_DELIVERY_DIR = DATA_DIR / "raw"
SNAPSHOT_DIR = DATA_DIR / "snapshot"
DEFAULT_WAREHOUSE_PATH = DATA_DIR / "warehouse" / "hdb_resale.duckdb"
MELTANO_PROJECT_DIR = REPO_ROOT / "meltano"
DBT_PROJECT_DIR = REPO_ROOT / "dbt_resale_flat"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"

DEFAULT_START_MONTH = "2023-01"
DEFAULT_END_MONTH = "2023-12"
DEFAULT_LOOKBACK_MONTHS = 1

# The resource data.gov.sg still publishes month by month (older months have their own
# resources: tap_hdb_resale.resources).
DATASET_ID = CURRENT.dataset_id
DATA_GOV_SG_API_URL = "https://data.gov.sg/api/action/datastore_search"
DATA_GOV_SG_DOWNLOAD_API_URL = "https://api-open.data.gov.sg/v1/public/api/datasets"

SOURCES = ("files", "api")
CATALOG_SETTING = "HDB_WAREHOUSE_CATALOG"
DATA_PATH_SETTING = "HDB_WAREHOUSE_DATA_PATH"


class SettingsError(ValueError):
    """A setting has a value the pipeline cannot use; the message says what is expected."""


@dataclass(frozen=True)
class Lake:
    """The shared warehouse: a DuckLake with its catalog in PostgreSQL (``catalog``, a libpq
    connection string, which may hold a password: never printed) and its Parquet files in
    ``data_path``, a folder every machine of the class reaches at the same path."""

    catalog: str = field(repr=False)
    data_path: Path

    def describe(self) -> str:
        """The lake in words, without the password."""
        return f"DuckLake {catalog_address(self.catalog)}, data in {display_path(self.data_path)}/"


def catalog_address(catalog: str) -> str:
    """``user@host:port/dbname`` of a libpq connection string, leaving out any password."""
    parts = dict(
        item.split("=", 1) for item in catalog.split() if "=" in item and "password" not in item
    )
    where = f"{parts.get('host', 'localhost')}:{parts.get('port', '5432')}"
    who = f"{parts['user']}@" if "user" in parts else ""
    return f"{who}{where}/{parts.get('dbname', '')}"


def lake_from(values: Mapping[str, str]) -> Lake | None:
    """The shared warehouse these settings name, or None for the DuckDB file (the default)."""
    catalog = _env_value(values, CATALOG_SETTING)
    if catalog is None:
        return None
    raw_path = _env_value(values, DATA_PATH_SETTING)
    if raw_path is None:
        raise SettingsError(
            f"{CATALOG_SETTING} is set but {DATA_PATH_SETTING} is not: the shared warehouse "
            "keeps its data as Parquet files in a folder every learner reaches at the same "
            f"path; set {DATA_PATH_SETTING} to it (your instructor's .env lines have it)."
        )
    if "=" not in catalog:
        raise SettingsError(
            f"{CATALOG_SETTING} is not a libpq connection string: expected "
            "'host=... port=... dbname=... user=... password=...'."
        )
    return Lake(catalog.strip(), resolve_path(raw_path, DATA_PATH_SETTING))


def lake_settings() -> Lake | None:
    """The shared warehouse the environment (and ``.env``) names, or None for the file."""
    return lake_from(environment())


@dataclass(frozen=True)
class Settings:
    """The resolved, validated settings of one run."""

    data_dir: Path | None
    warehouse_path: Path
    start_month: Month
    end_month: Month
    lookback_months: int = DEFAULT_LOOKBACK_MONTHS
    api_url: str = DATA_GOV_SG_API_URL
    api_key: str | None = field(default=None, repr=False)
    download_api_url: str = DATA_GOV_SG_DOWNLOAD_API_URL
    lake: Lake | None = None

    @property
    def warehouse_label(self) -> str:
        """The warehouse in words: the DuckDB file, or the shared DuckLake."""
        if self.lake is not None:
            return self.lake.describe()
        return display_path(self.warehouse_path)

    @property
    def source_mode(self) -> str:
        """``"files"`` when reading CSV deliveries, ``"api"`` when reading data.gov.sg."""
        return "files" if self.data_dir is not None else "api"

    @property
    def source_label(self) -> str:
        """Which source a run reads, in words: every summary and notebook says it."""
        if self.data_dir is None:
            return f"the data.gov.sg API ({self.api_url})"
        return describe_folder(self.data_dir)

    @property
    def months(self) -> list[Month]:
        """Every month of the window, oldest first."""
        return self.start_month.range_to(self.end_month)

    def describe(self) -> str:
        """One line a person can read, with no secret in it."""
        return (
            f"window {self.start_month}..{self.end_month}, source {self.source_label}, "
            f"warehouse {self.warehouse_label}"
        )

    def child_env(self) -> dict[str, str]:
        """Environment for a subprocess (Meltano, dbt, papermill) carrying these settings."""
        env = dict(os.environ)
        env.update(
            {
                "HDB_WAREHOUSE_PATH": str(self.warehouse_path),
                "HDB_START_MONTH": str(self.start_month),
                "HDB_END_MONTH": str(self.end_month),
                "HDB_LOOKBACK_MONTHS": str(self.lookback_months),
                "DATA_GOV_SG_API_URL": self.api_url,
            }
        )
        if self.data_dir is not None:
            env["HDB_RESALE_DATA_DIR"] = str(self.data_dir)
            env["HDB_RESALE_SOURCE"] = "files"
        else:
            env.pop("HDB_RESALE_DATA_DIR", None)
            env["HDB_RESALE_SOURCE"] = "api"
        if self.api_key:
            env["DATA_GOV_SG_API_KEY"] = self.api_key
        if self.lake is not None:
            env[CATALOG_SETTING] = self.lake.catalog
            env[DATA_PATH_SETTING] = str(self.lake.data_path)
            env["HDB_DUCKDB_EXTENSION_DIRECTORY"] = str(EXTENSION_DIRECTORY)
        else:  # empty, not unset: a .env naming a lake must not win over these settings
            env[CATALOG_SETTING] = ""
            env[DATA_PATH_SETTING] = ""
        return env


def describe_folder(folder: Path) -> str:
    """A deliveries folder in words: the bundled snapshot, ``make data``'s folder, or another."""
    resolved = Path(folder).resolve()
    if resolved == SNAPSHOT_DIR.resolve():
        return f"the bundled 2023 snapshot ({display_path(resolved)}/)"
    if resolved == DEFAULT_DELIVERY_DIR.resolve():
        return f"the downloads of `make data` ({display_path(resolved)}/)"
    return f"the folder {display_path(resolved)}/"


def holds_deliveries(folder: Path) -> bool:
    """Whether ``folder`` holds at least one CSV delivery (``.csv``, ``.CSV`` or ``.csv.gz``)."""
    if not folder.is_dir():
        return False
    return any(entry.name.lower().endswith((".csv", ".csv.gz")) for entry in folder.iterdir())


# Every DuckDB database file carries these bytes at this offset (after a checksum).
DUCKDB_MAGIC = b"DUCK"
DUCKDB_MAGIC_OFFSET = 8


def not_a_warehouse(path: Path) -> str | None:
    """Why an existing file at ``path`` is not a DuckDB database (a CSV, an empty file...),
    in words that name it and say what to do; None for a DuckDB file or no file at all."""
    if not path.is_file():
        return None
    with path.open("rb") as handle:
        head = handle.read(DUCKDB_MAGIC_OFFSET + len(DUCKDB_MAGIC))
    if head[DUCKDB_MAGIC_OFFSET:] == DUCKDB_MAGIC:
        return None
    text = head.removeprefix(b"\xef\xbb\xbf")
    if not head:
        looks = "it is empty"
    elif all(32 <= byte < 127 or byte in (9, 10, 13) for byte in text):
        looks = f"it is a text file, starting {text.decode('ascii')!r}"
    else:
        looks = "it does not start as a DuckDB file does"
    return (
        f"HDB_WAREHOUSE_PATH={display_path(path)} is not a DuckDB database ({looks}); it was "
        "left as it is. Point HDB_WAREHOUSE_PATH at a DuckDB file, such as "
        "data/warehouse/hdb_resale.duckdb, or at a new path to start a new warehouse."
    )


def display_path(path: Path | None) -> str:
    """A path relative to the repository when inside it, so output carries no home folder."""
    if path is None:
        return "-"
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def resolve_path(value: str, name: str) -> Path:
    """Resolve a path setting against the repository root; refuse empty or odd values."""
    text = value.strip()
    if not text:
        raise SettingsError(f"{name} is empty: expected a file system path.")
    if "\x00" in text:
        raise SettingsError(f"{name} contains a NUL byte: expected a file system path.")
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path.resolve()


def _env_value(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return None
    return value


def environment(env: Mapping[str, str] | None = None, *, dotenv: bool = True) -> dict[str, str]:
    """The process environment, with a git-ignored ``.env`` at the repo root filling gaps."""
    merged: dict[str, str] = {}
    if dotenv and (REPO_ROOT / ".env").is_file():
        merged.update({k: v for k, v in dotenv_values(REPO_ROOT / ".env").items() if v})
    merged.update(os.environ if env is None else env)
    return merged


def _set_environ(values: Mapping[str, str | None]) -> None:
    """Set environment variables; None removes one."""
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@contextmanager
def temporary_environ(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set environment variables for the block (None removes one), then put them back."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        _set_environ(values)
        yield
    finally:
        _set_environ(saved)


def load_settings(env: Mapping[str, str] | None = None, *, dotenv: bool = True) -> Settings:
    """Read, validate and resolve the settings, raising :class:`SettingsError` on bad values."""
    values = environment(env, dotenv=dotenv)

    def month(name: str, default: str) -> Month:
        raw = _env_value(values, name) or default
        try:
            return Month.parse(raw)
        except MonthError as exc:
            raise SettingsError(f"{name}={raw!r}: {exc}") from None

    start = month("HDB_START_MONTH", DEFAULT_START_MONTH)
    end = month("HDB_END_MONTH", DEFAULT_END_MONTH)
    if start < Month.parse(FIRST_DATASET_MONTH):
        raise SettingsError(
            f"HDB_START_MONTH={start}: data.gov.sg publishes resale prices from "
            f"{FIRST_DATASET_MONTH}; start the window there or later."
        )
    if end < start:
        raise SettingsError(
            f"HDB_END_MONTH={end} is before HDB_START_MONTH={start}: "
            "the window must run forward in time."
        )

    raw_lookback = _env_value(values, "HDB_LOOKBACK_MONTHS")
    lookback = DEFAULT_LOOKBACK_MONTHS
    if raw_lookback is not None:
        if not raw_lookback.strip().isdigit():
            raise SettingsError(
                f"HDB_LOOKBACK_MONTHS={raw_lookback!r}: expected a whole number of months >= 0."
            )
        lookback = int(raw_lookback)

    warehouse = resolve_path(
        _env_value(values, "HDB_WAREHOUSE_PATH") or str(DEFAULT_WAREHOUSE_PATH),
        "HDB_WAREHOUSE_PATH",
    )
    if warehouse.is_dir():
        raise SettingsError(
            f"HDB_WAREHOUSE_PATH={display_path(warehouse)} is a folder: "
            "expected the path of a DuckDB file, such as data/warehouse/hdb_resale.duckdb."
        )

    source = (_env_value(values, "HDB_RESALE_SOURCE") or "files").strip().lower()
    if source not in SOURCES:
        raise SettingsError(
            f"HDB_RESALE_SOURCE={source!r}: expected files (CSV deliveries: HDB_RESALE_DATA_DIR, "
            "else data/raw/, else the bundled snapshot) or api (the data.gov.sg API)."
        )
    data_dir: Path | None
    raw_dir = _env_value(values, "HDB_RESALE_DATA_DIR")
    if source == "api":
        if raw_dir is not None:
            raise SettingsError(
                f"HDB_RESALE_SOURCE=api and HDB_RESALE_DATA_DIR={raw_dir!r} are both set: a run "
                "reads one source. Unset one of them."
            )
        data_dir = None
    elif raw_dir is not None:
        data_dir = resolve_path(raw_dir, "HDB_RESALE_DATA_DIR")
        if not data_dir.is_dir():
            raise SettingsError(
                f"HDB_RESALE_DATA_DIR={raw_dir!r} is not a folder: expected a folder of "
                "CSV deliveries (or leave it unset to use data/raw/ or the bundled snapshot)."
            )
    elif holds_deliveries(DEFAULT_DELIVERY_DIR):
        data_dir = DEFAULT_DELIVERY_DIR
    else:
        data_dir = SNAPSHOT_DIR

    api_url = _env_value(values, "DATA_GOV_SG_API_URL") or DATA_GOV_SG_API_URL
    download_api_url = (
        _env_value(values, "DATA_GOV_SG_DOWNLOAD_API_URL") or DATA_GOV_SG_DOWNLOAD_API_URL
    )
    for name, url in (
        ("DATA_GOV_SG_API_URL", api_url),
        ("DATA_GOV_SG_DOWNLOAD_API_URL", download_api_url),
    ):
        if not url.startswith(("http://", "https://")):
            raise SettingsError(f"{name}={url!r}: expected an http(s) URL.")

    return Settings(
        data_dir=data_dir,
        warehouse_path=warehouse,
        start_month=start,
        end_month=end,
        lookback_months=lookback,
        api_url=api_url,
        api_key=_env_value(values, "DATA_GOV_SG_API_KEY"),
        download_api_url=download_api_url,
        lake=lake_from(values),
    )


def stage_settings(
    start_month: str | None = None,
    end_month: str | None = None,
    warehouse_path: str | Path | None = None,
    data_dir: str | Path | None = None,
) -> Settings:
    """The settings of one stage run: the environment's, with a notebook's parameters on top.

    A notebook's ``parameters`` cell defaults to ``None`` for each value, meaning "as the
    environment (or ``.env``) says"; papermill and Dagster inject real values there. Values
    are validated exactly like the environment's.
    """
    overrides = {
        "HDB_START_MONTH": start_month,
        "HDB_END_MONTH": end_month,
        "HDB_WAREHOUSE_PATH": warehouse_path,
        "HDB_RESALE_DATA_DIR": data_dir,
    }
    values = environment()
    values.update({name: str(value) for name, value in overrides.items() if value is not None})
    return load_settings(values, dotenv=False)
