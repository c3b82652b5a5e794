"""Fixtures for the tap's tests (the helpers themselves are in tap_helpers.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tap_helpers import FIXTURES, SHARED_MONTHLY, FakeApi, Responder, fake_servers


@pytest.fixture(scope="session")
def shared_monthly() -> Path:
    """The real 2023 deliveries beside the repository (read-only; never copied into it)."""
    folder = SHARED_MONTHLY.resolve()
    if not any(folder.glob("*.csv")):
        pytest.skip(f"reference deliveries not found in {folder}")
    return folder


@pytest.fixture
def fixture_deliveries() -> Path:
    """Two small invented deliveries, 2023-01 (4 rows, two identical) and 2023-02 (3 rows)."""
    return FIXTURES / "deliveries"


@pytest.fixture
def fake_api() -> Iterator[Callable[[Responder], FakeApi]]:
    """Start fake data.gov.sg servers (``fake_api(responder)``); stopped after the test."""
    with fake_servers() as start:
        yield start
