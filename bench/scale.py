"""``make bench``: each stage's time and peak memory from one month to a million rows, beside
the DuckDB-only floor, and the pipeline end to end through Dagster.

    python -m bench                      # every point, 3 repeats (tens of minutes)
    python -m bench --quick              # one month, 12 months, 0.1M rows; once; Dagster for
                                         # one month only (a few minutes)
    python -m bench --points one_month,synthetic_1m --repeat 2 --sample

Points: one month (2023-06) and the 12 months of 2023 from the reference deliveries, and
synthetic deliveries (``hdb_elt.synthetic``, seed 0) of about 0.1M, 0.3M and 1M rows over
1990-01..2025-12, written once under ``data/bench/`` and reused. For every point and repeat:

- the pipeline: the five stage notebooks run by papermill (``hdb_elt.stage_notebooks.iter_stages``)
  into a new warehouse, each stage timed with the peak resident memory of this process tree
  (this process, the kernel, Meltano, dbt); each stage's time is split into the notebook's
  cells (work) and the rest (starting the kernel, papermill);
- the floor: ``bench.floor`` in its own process, the same work straight in DuckDB;
- for one month and 12 months, also through Dagster (``bench.dagster``): one partition
  (repeated), and the 12-month backfill (one run per month, once; not in --quick); the wall
  time split into kernels, dagstermill's context cell, stage work and Dagster itself.

Results go to ``bench/results/<time>-<mode>.json`` and ``.md`` (``--sample``: also
``sample.json``/``sample.md``, the committed copy); the table, the ratio of each pipeline figure
to the floor and the slope of time against rows are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil

from bench.extract_load import compare as compare_extract_loads
from bench.extract_load import table as el_table
from bench.measure import measure
from bench.summary import DAGSTER_PATH, FLOOR_PATH, PIPELINE_PATH, markdown, slopes, targets
from hdb_elt.settings import DATA_DIR, REPO_ROOT, stage_settings
from hdb_elt.stage_notebooks import STAGE_NAMES, iter_stages, stage_name
from hdb_elt.synthetic import DEFAULT_END, DEFAULT_START, synthesize

SHARED = (REPO_ROOT / ".." / "shared" / "data" / "hdb_resale" / "monthly").resolve()
RESULTS_DIR = REPO_ROOT / "bench" / "results"
SYNTHETIC_DIR = DATA_DIR / "bench"


@dataclass(frozen=True)
class Point:
    name: str
    label: str
    start: str
    end: str
    rows: int | None = None  # synthetic rows; None: the reference deliveries
    dagster: bool = False

    def data_dir(self, reference: Path) -> Path:
        if self.rows is None:
            return reference
        return synthesize(
            reference,
            SYNTHETIC_DIR / self.name,
            self.rows,
            start=self.start,
            end=self.end,
            reuse=True,
        ).folder


POINTS = (
    Point("one_month", "one month (2023-06)", "2023-06", "2023-06", dagster=True),
    Point("twelve_months", "12 months (2023)", "2023-01", "2023-12", dagster=True),
    Point("synthetic_100k", "synthetic 0.1M rows (1990-2025)", DEFAULT_START, DEFAULT_END, 100_000),
    Point("synthetic_300k", "synthetic 0.3M rows (1990-2025)", DEFAULT_START, DEFAULT_END, 300_000),
    Point("synthetic_1m", "synthetic 1M rows (1990-2025)", DEFAULT_START, DEFAULT_END, 1_000_000),
)
QUICK_POINTS = ("one_month", "twelve_months", "synthetic_100k")


def spread(values: Sequence[float]) -> dict[str, float]:
    """min, median and max of the repeats."""
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "n": len(values),
    }


def loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


# --- the pipeline ------------------------------------------------------------------------------


def cell_seconds(notebook: Path) -> float:
    """Seconds spent in the executed notebook's code cells (papermill records each)."""
    import nbformat

    total = 0.0
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type == "code":
            total += (cell.metadata.get("papermill") or {}).get("duration") or 0.0
    return total


def run_pipeline_once(point: Point, data_dir: Path, work: Path) -> dict:
    """The five notebooks once into a new warehouse: per stage seconds, work, peak memory."""
    settings = stage_settings(point.start, point.end, work / "warehouse.duckdb", data_dir)
    stages = iter_stages(settings, work / "run")
    figures: dict[str, dict] = {}
    while True:
        measured = measure(lambda: next(stages, None))
        if measured.result is None:
            break
        run = measured.result
        cells = cell_seconds(run.notebook)
        figures[stage_name(run.stage)] = {
            "seconds": measured.seconds,
            "work_s": cells,
            "overhead_s": max(measured.seconds - cells, 0.0),
            "peak_rss_mib": measured.peak_rss_mib,
        }
    from hdb_elt.extract_load import latest_delivery_counts

    figures["rows"] = sum(latest_delivery_counts(settings.warehouse_path).values())
    return figures


def run_floor_once(point: Point, data_dir: Path, work: Path) -> dict:
    """``bench.floor`` in its own process; its own per-stage figures and its wall time."""
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.floor",
            "--data-dir",
            str(data_dir),
            "--database",
            str(work / "floor.duckdb"),
            "--start",
            point.start,
            "--end",
            point.end,
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"The floor failed on {point.name}:\n{done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["process_s"] = wall
    return figures


def summarise_stages(runs: list[dict], keys: Sequence[str]) -> dict:
    stages = {}
    for stage in STAGE_NAMES:
        stages[stage] = {
            key: spread([run[stage][key] for run in runs]) for key in keys if key != "peak_rss_mib"
        }
        stages[stage]["peak_rss_mib"] = max(run[stage]["peak_rss_mib"] for run in runs)
    totals = [sum(run[stage]["seconds"] for stage in STAGE_NAMES) for run in runs]
    return {
        "stages": stages,
        "total_s": spread(totals),
        "peak_rss_mib": max(s["peak_rss_mib"] for s in stages.values()),
    }


def bench_point(point: Point, reference: Path, repeat: int, log: Callable[[str], None]) -> dict:
    data_dir = point.data_dir(reference)
    pipeline_runs, floor_runs = [], []
    for attempt in range(1, repeat + 1):
        with tempfile.TemporaryDirectory(prefix=f"bench-{point.name}-") as tmp:
            log(f"{point.label}: pipeline, run {attempt}/{repeat} ...")
            pipeline_runs.append(run_pipeline_once(point, data_dir, Path(tmp)))
            log(f"  {sum(pipeline_runs[-1][s]['seconds'] for s in STAGE_NAMES):.1f} s; floor ...")
            floor_runs.append(run_floor_once(point, data_dir, Path(tmp)))
            log(f"  floor {floor_runs[-1]['total_s']:.1f} s (load {loadavg()[0]})")
    pipeline = summarise_stages(pipeline_runs, ("seconds", "work_s", "overhead_s"))
    floor = summarise_stages(floor_runs, ("seconds",))
    floor["process_s"] = spread([run["process_s"] for run in floor_runs])
    floor["rule_failures"] = floor_runs[-1]["rule_failures"]
    floor["test_failures"] = floor_runs[-1]["test_failures"]
    rows = pipeline_runs[-1]["rows"]
    if floor_runs[-1]["fact_rows"] != rows:
        raise SystemExit(
            f"{point.name}: the floor's fact has {floor_runs[-1]['fact_rows']:,} rows, the "
            f"pipeline loaded {rows:,}: they no longer do the same work."
        )
    ratios = {
        stage: pipeline["stages"][stage]["seconds"]["median"]
        / max(floor["stages"][stage]["seconds"]["median"], 1e-3)
        for stage in STAGE_NAMES
    }
    ratios["total"] = pipeline["total_s"]["median"] / floor["total_s"]["median"]
    el = pipeline["stages"]["extract_load"]["seconds"]["median"]
    return {
        "name": point.name,
        "label": point.label,
        "window": f"{point.start}..{point.end}",
        "rows": rows,
        "source": "reference deliveries" if point.rows is None else "synthetic, seed 0",
        "pipeline": {"path": PIPELINE_PATH, **pipeline},
        "floor": {"path": FLOOR_PATH, **floor},
        "ratios": ratios,
        "extract_load_rows_per_s": rows / el,
        "floor_extract_load_rows_per_s": rows
        / max(floor["stages"]["extract_load"]["seconds"]["median"], 1e-3),
        "loadavg": loadavg(),
    }


# --- Dagster, start-up costs ---------------------------------------------------------------------


def bench_dagster(months: list[str], reference: Path, repeat: int, kernel: float) -> dict:
    from bench.dagster import run_months

    walls, parts, every_run, runs_made = [], [], [], 0
    for _ in range(repeat):
        measured = measure(lambda: run_months(months, reference, kernel))
        total, runs = measured.result
        walls.append(total.wall)
        parts.append((total, measured.peak_rss_mib))
        every_run += [r.wall for r in runs]
        runs_made = len(runs)  # an asset backfill's runs: ranges of months (bench.dagster)
    total, _ = parts[walls.index(statistics.median_low(walls))]
    return {
        "path": DAGSTER_PATH,
        "runs": runs_made,
        "window": f"{months[0]}..{months[-1]}",
        "wall_s": spread(walls),
        "run_s": spread(every_run),
        "split_s": {
            "kernels": total.kernels,
            "dagstermill": total.dagstermill,
            "stage_work": total.work,
            "dagster": total.dagster,
        },
        "peak_rss_mib": max(p[1] for p in parts),
        "loadavg": loadavg(),
    }


def timed_command(command: list[str], repeat: int, cwd: Path = REPO_ROOT) -> dict:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, cwd=cwd, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return spread(times)


def start_up_costs(repeat: int) -> dict:
    """What every run pays before any row moves: processes and kernels starting."""
    from bench.notebooks import kernel_startup_seconds
    from hdb_elt.extract_load import meltano_executable
    from hdb_elt.transform import dbt_executable

    kernels = [kernel_startup_seconds(1) for _ in range(repeat)]
    return {
        "kernel_start_s": spread(kernels),
        "python_start_s": timed_command([sys.executable, "-c", "pass"], repeat),
        "meltano_cli_start_s": timed_command([meltano_executable(), "--version"], repeat),
        "dbt_cli_start_s": timed_command([dbt_executable(), "--version"], repeat),
        "dagster_process_start_s": timed_command(
            [sys.executable, "-c", "import dagster_orchestration.definitions"], repeat
        ),
    }


def git_commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return done.stdout.strip() + ("+changes" if dirty else "") if done.returncode == 0 else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one month, 12 months, 0.1M; once")
    parser.add_argument("--repeat", type=int, help="runs per figure (default 3; --quick 1)")
    parser.add_argument(
        "--points", help=f"comma-separated subset of {', '.join(p.name for p in POINTS)}"
    )
    parser.add_argument("--no-dagster", action="store_true", help="leave out the Dagster runs")
    parser.add_argument(
        "--peers",
        action=argparse.BooleanOptionalAction,
        help="extract-load beside dlt and target-duckdb, installed on first use under "
        "data/bench/peers/ (default: yes; --quick: no)",
    )
    parser.add_argument("--data-dir", type=Path, default=SHARED, help="reference deliveries")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results folder")
    parser.add_argument("--sample", action="store_true", help="also write sample.json/.md")
    args = parser.parse_args(argv)

    if not any(args.data_dir.glob("*.csv")):
        sys.exit(f"No reference deliveries in {args.data_dir}: pass --data-dir.")
    repeat = args.repeat or (1 if args.quick else 3)
    names = args.points.split(",") if args.points else (QUICK_POINTS if args.quick else None)
    unknown = set(names or ()) - {p.name for p in POINTS}
    if unknown:
        sys.exit(f"Unknown point(s) {', '.join(sorted(unknown))}.")
    chosen = [p for p in POINTS if names is None or p.name in names]
    os.environ["TQDM_DISABLE"] = "1"
    # As `make` does (Makefile): Meltano, dbt and the kernels start from cached bytecode even
    # where the environment turns caching off; else each start recompiles them (seconds).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

    def log(text: str) -> None:
        print(text, flush=True)

    started = datetime.now(UTC)
    meta = {
        "started": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "quick": args.quick,
        "repeat": repeat,
        "points": [p.name for p in chosen],
        "loadavg_start": loadavg(),
        "commit": git_commit(),
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gib": psutil.virtual_memory().total / 2**30,
            "platform": platform.platform(terse=True),
            "python": platform.python_version(),
        },
    }
    log(f"Benchmark: {', '.join(meta['points'])}; {repeat} run(s) each; load {loadavg()}")
    start_up = start_up_costs(repeat)
    log(f"Start-up costs measured (kernel {start_up['kernel_start_s']['median']:.1f} s)")
    # What this process holds before the first stage runs (it is part of every peak below).
    meta["bench_rss_mib"] = psutil.Process().memory_info().rss / 2**20
    points = [bench_point(point, args.data_dir, repeat, log) for point in chosen]
    # Extract-load paths side by side on each point's files: ours, the floor, the peers.
    peers = not args.quick if args.peers is None else args.peers
    extract_loads = {}
    for point in chosen:
        log(f"{point.label}: extract-load beside the floor{' and its peers' if peers else ''} ...")
        files = point.data_dir(args.data_dir)
        extract_loads[point.name] = compare_extract_loads(
            files, point.start, point.end, repeat=repeat, peers=peers, log=log
        )
    dagster: dict[str, dict] = {}
    if not args.no_dagster:
        kernel = start_up["kernel_start_s"]["median"]
        for point in chosen:
            if not point.dagster:
                continue
            months = [str(m) for m in _months(point.start, point.end)]
            if args.quick and len(months) > 1:
                continue  # the 12-month backfill takes minutes: full mode only
            # A backfill takes minutes: once.
            times = repeat if len(months) == 1 else 1
            log(f"{point.label}: through Dagster (an asset backfill, {times} time(s)) ...")
            dagster[point.name] = bench_dagster(months, args.data_dir, times, kernel)
            log(f"  {dagster[point.name]['wall_s']['median']:.1f} s")
    slope = slopes(points)
    meta["finished"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    meta["loadavg_end"] = loadavg()
    result = {
        "meta": meta,
        "start_up": start_up,
        "points": points,
        "dagster": dagster,
        "extract_load_paths": extract_loads,
        "slope": slope,
        "targets": targets({p["name"]: p for p in points}, dagster, slope),
    }
    text = markdown(result) + "".join("\n" + el_table(c) for c in extract_loads.values())
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{started.strftime('%Y%m%dT%H%M%SZ')}-{'quick' if args.quick else 'full'}"
    names_written = [stem] + (["sample"] if args.sample else [])
    for name in names_written:
        (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.out / f"{name}.md").write_text(text)
    print("\n" + text)
    print(f"Written: {', '.join(str(args.out / n) + '.{json,md}' for n in names_written)}")
    return 0


def _months(start: str, end: str) -> list:
    from hdb_elt.months import Month

    return Month.parse(start).range_to(Month.parse(end))


if __name__ == "__main__":
    sys.exit(main())
