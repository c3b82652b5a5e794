"""The dbt project's seeds that the validation gate reads too: one place for each fact.

dbt loads ``dbt_resale_flat/seeds/*.csv`` into the warehouse; the gate (and the normalised
spellings it checks) read the same files here, so the towns the gate knows are the towns
``dim_town`` has, and the flat model spellings staging makes are the ones the gate expects.
"""

from __future__ import annotations

import csv
from functools import cache

from hdb_elt.settings import DBT_PROJECT_DIR

SEEDS_DIR = DBT_PROJECT_DIR / "seeds"


@cache
def seed_column(seed: str, column: str) -> tuple[str, ...]:
    """The values of ``column`` in ``seeds/<seed>.csv``, in file order."""
    with (SEEDS_DIR / f"{seed}.csv").open(newline="", encoding="utf-8") as handle:
        return tuple(row[column] for row in csv.DictReader(handle))


def known_towns() -> tuple[str, ...]:
    """Every HDB town of the resale data since 1990 (seeds/town_regions.csv)."""
    return seed_column("town_regions", "town")


def flat_model_spellings() -> dict[str, str]:
    """Today's spelling of each flat model (seeds/flat_models.csv), keyed by its upper case:
    ``NEW GENERATION`` (1990s) and ``New Generation`` are one model."""
    return {model.upper(): model for model in seed_column("flat_models", "flat_model")}
