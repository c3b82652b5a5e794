"""Benchmark the pipeline through Dagster beside the direct path, one month to the history.

One partition beside the same notebooks without Dagster, an asset backfill of 12 months beside
one ``make run`` of them, and (``--history``) the whole synthetic history since 1990 as an
asset backfill.

    python -m bench.dagster [--data-dir ../shared/data/hdb_resale/monthly] [--months 12]
    python -m bench.dagster --history      # + ~1M synthetic rows, 1990-2025 (minutes)

Each Dagster run goes through Dagster in this process, as ``make run`` does (the in-process
executor; a run launched from ``dagster dev`` also pays for starting its own process, measured
apart), into a new warehouse and a temporary Dagster instance. An asset backfill runs as the
backfill daemon launches it under the notebook assets' backfill policy: its months in ranges
of up to ``MONTHS_PER_BACKFILL_RUN``, one run per range, one after the other (as the run queue
keeps them). The direct path is the same five notebooks run by papermill in this process
(``hdb_elt.stage_notebooks.run_stages``), without Dagster; ``make run`` is ``python -m
classroom run`` in its own process. Each Dagster run's wall time is split into:

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
from dagster_orchestration.partitions import MONTHS_PER_BACKFILL_RUN
from hdb_elt.months import Month
from hdb_elt.settings import REPO_ROOT, stage_settings, temporary_environ
from hdb_elt.stage_notebooks import STAGES, run_stages

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


def backfill_windows(months: list[str]) -> list[tuple[str, str]]:
    """The runs an asset backfill of ``months`` makes under the assets' backfill policy:
    consecutive ranges of up to MONTHS_PER_BACKFILL_RUN months."""
    chunks = [
        months[i : i + MONTHS_PER_BACKFILL_RUN]
        for i in range(0, len(months), MONTHS_PER_BACKFILL_RUN)
    ]
    return [(chunk[0], chunk[-1]) for chunk in chunks]


def run_windows(
    windows: list[tuple[str, str]], data_dir: Path, kernel: float
) -> tuple[Split, list[Split]]:
    """Run each window (one Dagster run each) into a new warehouse; the total and each run."""
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
            for start, end in windows:
                outcome = execute(start, end, instance)
                if not outcome.success:
                    raise SystemExit(f"{outcome.window} failed:\n{outcome.failure}")
                dagstermill, work = notebook_seconds(outcome.notebooks)
                split = Split(outcome.seconds, len(STAGES) * kernel, dagstermill, work)
                total.add(split)
                runs.append(split)
    return total, runs


def run_months(months: list[str], data_dir: Path, kernel: float) -> tuple[Split, list[Split]]:
    """An asset backfill of ``months`` (a single month: its own run), as the daemon runs it."""
    return run_windows(backfill_windows(months), data_dir, kernel)


def direct_seconds(start: str, end: str, data_dir: Path) -> float:
    """The five notebooks by papermill in this process, no Dagster, into a new warehouse."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-direct-") as tmp,
        environment(Path(tmp), data_dir),
    ):
        settings = stage_settings(start, end, Path(tmp) / "warehouse.duckdb", data_dir)
        started = time.perf_counter()
        run_stages(settings, Path(tmp) / "run")  # a failing stage raises StageFailed
        return time.perf_counter() - started


def make_run_seconds(start: str, end: str, data_dir: Path) -> float:
    """One ``make run`` (``python -m classroom run``) of ``start``..``end``, its own process."""
    with tempfile.TemporaryDirectory(prefix="bench-make-run-") as tmp:
        root = Path(tmp)
        env = {
            **os.environ,
            "HDB_RESALE_DATA_DIR": str(data_dir),
            "HDB_WAREHOUSE_PATH": str(root / "warehouse" / "hdb_resale.duckdb"),
            "HDB_DAGSTER_RUNS_DIR": str(root / "runs"),
            "DAGSTER_HOME": str(root / "dagster_home"),
            "HDB_START_MONTH": start,
            "HDB_END_MONTH": end,
            "TQDM_DISABLE": "1",
        }
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "classroom", "run"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"make run {start}..{end} failed:\n{done.stdout[-3000:]}")
        return seconds


def history_months() -> tuple[Path, list[str]]:
    """The synthetic history (bench.scale's 1M-row point, written once and reused)."""
    from bench.scale import POINTS

    point = next(p for p in POINTS if p.name == "synthetic_1m")
    months = [str(m) for m in Month.parse(point.start).range_to(Month.parse(point.end))]
    return point.data_dir(SHARED), months


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
    parser.add_argument(
        "--history",
        action="store_true",
        help="also backfill the ~430-month synthetic history (~1M rows) through Dagster",
    )
    args = parser.parse_args()
    kernel = kernel_startup_seconds()
    process = process_start_seconds()
    print(f"kernel start-up (median of 3): {kernel:.2f} s; five per run")
    print(f"run process start-up (dagster dev, per run; not in the figures below): {process:.2f} s")
    print(f"asset backfills: up to {MONTHS_PER_BACKFILL_RUN} months per run\n")

    one, _ = run_months(["2023-06"], args.data_dir, kernel)
    direct = direct_seconds("2023-06", "2023-06", args.data_dir)
    year = [f"2023-{m:02d}" for m in range(1, args.months + 1)]
    backfill, runs = run_months(year, args.data_dir, kernel)
    make_run = make_run_seconds(year[0], year[-1], args.data_dir)

    print(
        f"{'':<24}{'wall s':>8}{'kernels s':>16}{'dagstermill s':>16}{'stage work s':>16}"
        f"{'Dagster s':>16}"
    )
    print(row("one partition (2023-06)", one))
    print(row(f"backfill, {len(runs)} run(s)", backfill))
    starting = one.kernels + one.dagstermill
    print(
        f"\nOne partition: {one.wall:.1f} s through Dagster, {starting:.1f} s "
        f"({starting / one.wall:.0%}) of it starting kernels and rebuilding Dagster's context "
        f"in them; the direct path (papermill, no Dagster) {direct:.1f} s: "
        f"{one.wall / direct:.2f}x (target <= 1.5x)."
    )
    print(
        f"Asset backfill of {len(year)} months: {backfill.wall:.1f} s in {len(runs)} run(s) "
        f"(+{process:.1f} s per run from dagster dev); one make run of them {make_run:.1f} s: "
        f"{(backfill.wall + len(runs) * process) / make_run:.2f}x with dagster dev's process "
        "start-ups (target <= 2x)."
    )
    if args.history:
        data_dir, months = history_months()
        history, runs = run_months(months, data_dir, kernel)
        minutes = (history.wall + len(runs) * process) / 60
        print(row(f"history, {len(runs)} runs", history))
        print(
            f"History {months[0]}..{months[-1]} ({len(months)} months, synthetic): "
            f"{history.wall / 60:.1f} min in {len(runs)} runs, {minutes:.1f} min with dagster "
            "dev's process start-ups (target < 15 min)."
        )


if __name__ == "__main__":
    main()
