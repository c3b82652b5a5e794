"""One baseline pipeline for the whole fault suite, built once and cloned per case.

The baseline loads and builds the shared 2023-01 and 2023-02 deliveries for the window
2023-01..2023-03 (so 2023-03 is the month every case delivers). The reference is the baseline
plus the clean 2023-03 delivery: what every case must end at once its good delivery arrives.
dbt's artifacts and logs go to folders of this suite, so another dbt (another checkout, a
concurrent test run) never mixes its results with ours.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from faults.support import (
    LOAD_COLUMNS,
    Pipeline,
    delivery_name,
    fact_checksums_by_month,
    latest_counts,
    mart_checksums,
    meltano_state,
    raw_snapshot,
)
from hdb_elt.extract_load import read_state


@dataclass(frozen=True)
class Reference:
    """The clean end state: the pipeline, and its marts' checksums (load columns ignored)."""

    pipeline: Pipeline
    marts: dict[str, str]
    fact_by_month: dict[str, str]
    counts: dict[str, int]


@pytest.fixture(scope="package")
def tool_dirs(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("fault-tools")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DBT_TARGET_PATH", str(root / "dbt-target"))
        patch.setenv("DBT_LOG_PATH", str(root / "dbt-logs"))
        patch.setenv("TQDM_DISABLE", "1")
        yield root


@pytest.fixture(scope="package")
def baseline(tool_dirs: Path, shared_monthly: Path, tmp_path_factory) -> Pipeline:
    pipeline = Pipeline(tmp_path_factory.mktemp("baseline"))
    pipeline.deliveries.mkdir(parents=True)
    for month in ("2023-01", "2023-02"):
        shutil.copy(shared_monthly / delivery_name(month), pipeline.deliveries)
    with pytest.MonkeyPatch.context() as patch:
        pipeline.activate(patch)
        outcome = pipeline.run(dbt_tests=True)
        assert outcome.stage is None, outcome.message
        # The suite reads Meltano's state from its system db directly (fast); it is what
        # `meltano state get` returns.
        state = read_state(pipeline.settings())["singer_state"]["bookmarks"]
        assert state["resale_flat_prices"]["months"] == meltano_state(pipeline)["months"]
    assert set(meltano_state(pipeline)["months"]) == {"2023-01", "2023-02"}
    assert raw_snapshot(pipeline.warehouse)["rows"] == 2552 + 1837
    return pipeline


@pytest.fixture(scope="package")
def reference(baseline: Pipeline, shared_monthly: Path, tmp_path_factory) -> Reference:
    pipeline = baseline.clone(tmp_path_factory.mktemp("reference") / "pipeline")
    shutil.copy(shared_monthly / delivery_name("2023-03"), pipeline.deliveries)
    with pytest.MonkeyPatch.context() as patch:
        outcome = pipeline.activate(patch).run(dbt_tests=True)
    assert outcome.stage is None, outcome.message
    return Reference(
        pipeline,
        mart_checksums(pipeline.warehouse, ignore=LOAD_COLUMNS),
        fact_checksums_by_month(pipeline.warehouse, ignore=LOAD_COLUMNS),
        latest_counts(pipeline.warehouse),
    )


@pytest.fixture
def case_root(tool_dirs: Path) -> Path:
    """Where a test's pipeline lives: the same path for every test (emptied first), because
    dbt parses the whole project again whenever the warehouse path in its profile changes."""
    root = tool_dirs / "case"
    if root.exists():
        shutil.rmtree(root)
    return root


@pytest.fixture
def pipeline(baseline: Pipeline, case_root: Path, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    """A fresh clone of the baseline, active in this test's environment."""
    return baseline.clone(case_root).activate(monkeypatch)
