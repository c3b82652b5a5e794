"""``pytest --nbval notebooks/``: run the stage notebooks on the reference deliveries.

The committed outputs were made from the real 2023 deliveries in a fresh warehouse
(``make notebooks``), so the check runs the same way: the reference folder beside the
repository and a new, temporary warehouse, whatever ``.env`` says.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from classroom.reference_outputs import REFERENCE_DELIVERIES

_WORKDIR = tempfile.mkdtemp(prefix="hdb-nbval-")


SANITIZE = Path(__file__).with_name("nbval-sanitize.cfg")


def pytest_configure(config: pytest.Config) -> None:
    # Paths of scratch folders differ between a test run and `make notebooks`: compare without.
    if getattr(config.option, "nbval_sanitize_with", None) is None:
        config.option.nbval_sanitize_with = str(SANITIZE)
    os.environ.update(
        {
            "HDB_RESALE_DATA_DIR": str(REFERENCE_DELIVERIES),
            "HDB_WAREHOUSE_PATH": str(Path(_WORKDIR) / "warehouse" / "hdb_resale.duckdb"),
            "HDB_START_MONTH": "2023-01",
            "HDB_END_MONTH": "2023-12",
            "HDB_LOOKBACK_MONTHS": "1",
        }
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any(REFERENCE_DELIVERIES.glob("*.csv")):
        skip = pytest.mark.skip(reason=f"reference deliveries not found in {REFERENCE_DELIVERIES}")
        for item in items:
            item.add_marker(skip)
