"""The dbt project's seeds that the validation gate reads too: one place for each fact.

dbt loads ``dbt_resale_flat/seeds/*.csv`` into the warehouse; the gate (and the normalised
spellings it checks) read the same files here, so the towns the gate knows are the towns
``dim_town`` has, and the flat model spellings staging makes are the ones the gate expects.

``HDB_DBT_SEEDS_DIR`` points the gate at another copy of the seeds: an exercise that changes
its own copy of the dbt project (``classroom.exercises``) sets it, so the gate and dbt read the
same seeds there too. A seed is read again when its file changes.
"""

from __future__ import annotations

import csv
import os
import re
from functools import cache
from pathlib import Path

from hdb_elt.settings import DBT_PROJECT_DIR

SEEDS_DIR = DBT_PROJECT_DIR / "seeds"
SEEDS_DIR_ENV = "HDB_DBT_SEEDS_DIR"


def seeds_dir() -> Path:
    """The seeds the gate reads: ``HDB_DBT_SEEDS_DIR`` if set, else the project's own."""
    configured = os.environ.get(SEEDS_DIR_ENV, "").strip()
    return Path(configured) if configured else SEEDS_DIR


def seed_column(seed: str, column: str) -> tuple[str, ...]:
    """The values of ``column`` in ``seeds/<seed>.csv``, in file order."""
    path = seeds_dir() / f"{seed}.csv"
    changed = path.stat()
    return _read_column(path, changed.st_mtime_ns, changed.st_size, column)


@cache
def _read_column(path: Path, _mtime_ns: int, _size: int, column: str) -> tuple[str, ...]:
    with path.open(newline="", encoding="utf-8") as handle:
        return tuple(row[column] for row in csv.DictReader(handle))


def known_towns() -> tuple[str, ...]:
    """Every HDB town of the resale data since 1990 (seeds/town_regions.csv)."""
    return seed_column("town_regions", "town")


def _spelling_key(text: str) -> str:
    # As staging matches a spelling: surrounding spaces dropped, runs of spaces made one, any case.
    return re.sub(" +", " ", text.strip(" ")).upper()


def flat_model_spellings() -> dict[str, str]:
    """Today's spelling of each flat model, keyed by the upper case of every spelling it is
    delivered in: its own whatever the case (seeds/flat_models.csv: ``NEW GENERATION`` of the
    1990s and ``New Generation`` are one model), and the other spellings that are the same
    model (seeds/flat_model_spellings.csv: a spelling -> the model it means)."""
    today = {model.upper(): model for model in seed_column("flat_models", "flat_model")}
    variants = zip(
        seed_column("flat_model_spellings", "spelling"),
        seed_column("flat_model_spellings", "flat_model"),
        strict=True,
    )
    return today | {_spelling_key(s): today.get(m.upper(), m) for s, m in variants}
