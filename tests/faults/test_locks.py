"""A warehouse held by another process: every stage says which file, which process, and what
to do, whichever tool (the package, Meltano's loader, dbt) met the lock.

DuckDB lets one process write a file, and no process write it while another has it open,
even read-only. The stage notebooks never keep a connection (they open the file read-only
and close it at once: tests/test_notebooks.py runs a whole workbook in one live kernel and
then a run), but a learner's own ``duckdb.connect(...)`` left open in a kernel does block a
run; then the run must say so plainly.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from jupyter_client.manager import start_new_kernel

import hdb_elt.extract_load as extract_load
from faults.support import Pipeline, raw_snapshot
from hdb_elt.extract_load import run_extract_load
from hdb_elt.test import run_tests
from hdb_elt.transform import build_models
from hdb_elt.warehouse import WarehouseLockedError, open_warehouse

pytestmark = pytest.mark.slow

HOLD = (
    "import sys, time, duckdb\n"
    "con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == 'ro')\n"
    "print('holding', flush=True)\n"
    "time.sleep(600)\n"
)


@contextmanager
def held(warehouse: Path, mode: str = "rw") -> Iterator[int]:
    """Another Python process holding a connection to the warehouse; yields its pid."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(warehouse), mode], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == "holding"
        yield process.pid
    finally:
        process.kill()
        process.wait()


def assert_explains(error: BaseException, pipeline: Pipeline, pid: int) -> None:
    message = str(error)
    assert isinstance(error, WarehouseLockedError), message
    assert str(pipeline.warehouse) in message or pipeline.warehouse.name in message
    assert f"locked by process {pid}" in message
    assert f"`kill {pid}`" in message and "then try again" in message
    assert error.pid == pid


def test_a_writer_elsewhere_is_named_by_every_stage(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = pipeline.settings()
    raw_before = raw_snapshot(pipeline.warehouse)
    with held(pipeline.warehouse) as pid:
        with pytest.raises(WarehouseLockedError) as opened:
            open_warehouse(pipeline.warehouse, read_only=True)
        assert_explains(opened.value, pipeline, pid)

        with pytest.raises(WarehouseLockedError) as loaded:
            run_extract_load(settings)
        assert_explains(loaded.value, pipeline, pid)

        # The lock taken between the package's checks and Meltano's loader opening the file:
        # the loader's own DuckDB error, in Meltano's log, is recognised and explained.
        monkeypatch.setattr(extract_load, "ensure_warehouse", lambda path: "locked-elsewhere")
        monkeypatch.setattr(extract_load, "latest_loads", lambda path: set())
        with pytest.raises(WarehouseLockedError) as in_meltano:
            run_extract_load(settings)
        assert_explains(in_meltano.value, pipeline, pid)
        monkeypatch.undo()
        pipeline.activate(monkeypatch)

        with pytest.raises(WarehouseLockedError) as in_dbt:
            build_models(settings)
        assert_explains(in_dbt.value, pipeline, pid)

        with pytest.raises(WarehouseLockedError) as in_dbt_test:
            run_tests(settings)
        assert_explains(in_dbt_test.value, pipeline, pid)
    assert raw_snapshot(pipeline.warehouse) == raw_before

    # Once the other process is gone, the run goes through.
    assert pipeline.run(build=False).stage is None


def test_a_kernel_holding_a_connection_is_named_as_a_jupyter_kernel(pipeline: Pipeline) -> None:
    manager, client = start_new_kernel(kernel_name="python3")
    outputs: list[dict] = []
    try:
        reply = client.execute_interactive(
            "import duckdb, os\n"
            f"con = duckdb.connect({str(pipeline.warehouse)!r}, read_only=True)\n"
            "print(os.getpid())",
            timeout=60,
            output_hook=lambda message: outputs.append(message),
        )
        assert reply["content"]["status"] == "ok"
        kernel_pid = int(next(m for m in outputs if m["msg_type"] == "stream")["content"]["text"])
        outcome = pipeline.run(build=False)
        assert outcome.stage == "extract-load"
        assert f"is locked by process {kernel_pid} (a Jupyter kernel)" in outcome.message
        assert "Kernel > Shut Down Kernel" in outcome.message

        # The learner closes the connection; the kernel stays up, and the run goes through.
        client.execute_interactive("con.close()", timeout=60)
        assert pipeline.run(build=False).stage is None
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
