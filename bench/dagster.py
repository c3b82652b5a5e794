"""Benchmark the pipeline through Dagster: one partition end-to-end, and a 12-month backfill.

    python -m bench.dagster [--data-dir ../shared/data/hdb_resale/monthly] [--months 12]

Each run goes through Dagster in this process, as ``make run`` does (the in-process executor;
a run launched from ``dagster dev`` also pays for starting its own process, measured apart),
into a new warehouse and a temporary Dagster instance. The one partition is 2023-06 in a new
warehouse; the backfill is one run per month, one after the other (as the run queue keeps
them), in another. Each run's wall time is split into:

- kernels: starting the five notebook kernels (measured on its own, as in bench.notebooks);
- dagstermill: the cell dagstermill puts first in each notebook, which imports Dagster and
  rebuilds the run's context inside the kernel (from the executed notebooks' own timings);
- stage work: every other cell of the notebooks (Meltano, pandera, dbt, charts);
- Dagster: the rest (steps, checks, metadata, keeping the notebooks and their HTML).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

from bench.notebooks import SHARED, kernel_startup_seconds
from hdb_elt.settings import temporary_environ
from hdb_elt.stage_notebooks import STAGES

CONTEXT_TAG = "injected-parameters"  # dagstermill's cell
TEARDOWN_TAG = "injected-teardown"


@dataclass
class Split:
    wall: float = 0.0
    kernels: float = 0.0
    dagstermill: float = 0.0
    work: float = 0.0

    @property
    def dagster(self) -> float:
        return max(self.wall - self.kernels - self.dagstermill - self.work, 0.0)

    def add(self, other: Split) -> None:
        self.wall += other.wall
        self.kernels += other.kernels
        self.dagstermill += other.dagstermill
        self.work += other.work


def notebook_seconds(folder: Path) -> tuple[float, float]:
    """(dagstermill's cells, every other cell) of a run's executed notebooks, in seconds."""
    dagstermill = work = 0.0
    for stage in STAGES:
        notebook = nbformat.read(folder / f"{stage}.ipynb", as_version=4)
        for cell in notebook.cells:
            seconds = (cell.metadata.get("papermill") or {}).get("duration") or 0.0
            tags = cell.metadata.get("tags", [])
            if CONTEXT_TAG in tags or TEARDOWN_TAG in tags:
                dagstermill += seconds
            elif cell.cell_type == "code":
                work += seconds
    return dagstermill, work


def environment(root: Path, data_dir: Path):
    """The settings pointed at ``data_dir`` and a warehouse and run records under ``root``;
    DAGSTER_HOME, which the runs set, is put back afterwards too."""
    return temporary_environ(
        {
            "HDB_RESALE_DATA_DIR": str(data_dir),
            "HDB_WAREHOUSE_PATH": str(root / "warehouse" / "hdb_resale.duckdb"),
            "HDB_DAGSTER_RUNS_DIR": str(root / "runs"),
            "TQDM_DISABLE": "1",
            "DAGSTER_HOME": os.environ.get("DAGSTER_HOME"),
        }
    )


def run_months(months: list[str], data_dir: Path, kernel: float) -> tuple[Split, list[Split]]:
    """Run each month (one Dagster run each) into a new warehouse; the total and each run."""
    from dagster import DagsterInstance

    from classroom.runner import execute
    from dagster_orchestration.home import prepare_home

    total, runs = Split(), []
    with (
        tempfile.TemporaryDirectory(prefix="bench-dagster-") as tmp,
        environment(Path(tmp), data_dir),
    ):
        home = prepare_home(Path(tmp) / "dagster_home")
        with DagsterInstance.from_config(str(home)) as instance:
            for month in months:
                outcome = execute(month, month, instance)
                if not outcome.success:
                    raise SystemExit(f"{month} failed:\n{outcome.failure}")
                dagstermill, work = notebook_seconds(outcome.notebooks)
                split = Split(outcome.seconds, len(STAGES) * kernel, dagstermill, work)
                total.add(split)
                runs.append(split)
    return total, runs


def process_start_seconds(repeat: int = 3) -> float:
    """What ``dagster dev`` adds per run: a new process importing Dagster and the code location."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "import dagster_orchestration.definitions"],
            check=True,
            capture_output=True,
        )
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def row(label: str, split: Split) -> str:
    def part(seconds: float) -> str:
        return f"{seconds:7.1f} ({seconds / split.wall:4.0%})"

    return (
        f"{label:<24}{split.wall:8.1f}{part(split.kernels):>16}{part(split.dagstermill):>16}"
        f"{part(split.work):>16}{part(split.dagster):>16}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=SHARED)
    parser.add_argument("--months", type=int, default=12, help="months in the backfill")
    args = parser.parse_args()
    kernel = kernel_startup_seconds()
    process = process_start_seconds()
    print(f"kernel start-up (median of 3): {kernel:.2f} s; five per run")
    print(
        f"run process start-up (dagster dev, per run; not in the figures below): {process:.2f} s\n"
    )

    one, _ = run_months(["2023-06"], args.data_dir, kernel)
    year = [f"2023-{m:02d}" for m in range(1, args.months + 1)]
    backfill, runs = run_months(year, args.data_dir, kernel)

    print(
        f"{'':<24}{'wall s':>8}{'kernels s':>16}{'dagstermill s':>16}{'stage work s':>16}"
        f"{'Dagster s':>16}"
    )
    print(row("one partition (2023-06)", one))
    print(row(f"backfill, {len(year)} runs", backfill))
    per_run = statistics.median(r.wall for r in runs)
    starting = one.kernels + one.dagstermill
    print(
        f"\nOne partition: {one.wall:.1f} s end to end, {starting:.1f} s "
        f"({starting / one.wall:.0%}) of it starting kernels and rebuilding Dagster's context "
        f"in them. Backfill: "
        f"{backfill.wall:.1f} s, a median {per_run:.1f} s per month; from dagster dev add "
        f"about {process:.1f} s per run for its process."
    )


if __name__ == "__main__":
    main()
