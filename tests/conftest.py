"""Fixtures shared by the test suites."""

from __future__ import annotations

from pathlib import Path

import pytest
from postgres_support import postgres_server  # noqa: F401 (a fixture: a real PostgreSQL server)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_MONTHLY = (REPO_ROOT / ".." / "shared" / "data" / "hdb_resale" / "monthly").resolve()


@pytest.fixture(scope="session")
def shared_monthly() -> Path:
    """The real 2023 deliveries beside the repository (read-only; never copied into it)."""
    if not any(SHARED_MONTHLY.glob("*.csv")):
        pytest.skip(f"reference deliveries not found in {SHARED_MONTHLY}")
    return SHARED_MONTHLY
