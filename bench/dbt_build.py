"""Benchmark the transform stage: wall time of `dbt build` on the 12 reference months, on one
re-delivered month, and how much of it is dbt starting up.

    .venv/bin/python bench/dbt_build.py                  # 3 repeats, the median is reported
    .venv/bin/python bench/dbt_build.py --repeat 5 --bytecode-cache

Each figure is the wall time of one `dbt ...` subprocess, as hdb_elt.transform.run_dbt runs it:
- 12 months: `dbt build` on a fresh warehouse holding the 12 months (one load);
- one re-delivered month: a new delivery of 2023-03 (rows removed, one added) is loaded,
  then `dbt build` with no window, which rebuilds what is new;
- the same as the pipeline runs it (hdb_elt.transform.build_window): without unit tests;
- --vars: another new delivery of 2023-03, then
  `dbt build --vars '{"start_month": "2023-03", "end_month": "2023-03"}'`;
- start-up: `dbt parse` with a saved manifest (import dbt, read the project, no SQL); every
  dbt command pays it, so "start-up share" = start-up / wall time.
Changing --vars makes dbt re-parse the whole project (about a second here), so the window
build pays a full parse, as any run with a different window does.

--bytecode-cache lets Python cache dbt's compiled bytecode in a temporary folder. Without it,
an environment with PYTHONDONTWRITEBYTECODE=1 and no .pyc files (some sandboxes) recompiles
dbt's Python on every start; a normal pip install ships the .pyc files.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))

from dbt_support import (  # noqa: E402  (the raw-layer helper lives with the tests)
    load_deliveries,
    redeliver,
    shared_month_files,
)

from hdb_elt.settings import load_settings  # noqa: E402
from hdb_elt.transform import run_dbt, window_vars  # noqa: E402

ONE_MONTH = "2023-03"
LABELS = {  # figure: (label, goal in seconds)
    "full": ("dbt build, 12 months, fresh marts", 10.0),
    "month_default": ("dbt build, one re-delivered month", 5.0),
    "month_pipeline": ("  the same as the pipeline runs it (no unit tests)", 5.0),
    "month_window": (f"dbt build --vars {ONE_MONTH}..{ONE_MONTH}, re-delivered", 5.0),
}


def timed_dbt(args: list[str], warehouse: Path, target: Path) -> tuple[float, float]:
    """(wall seconds, dbt's own elapsed seconds from run_results.json) of one dbt command."""
    settings = replace(load_settings(env={}, dotenv=False), warehouse_path=warehouse)
    results = target / "run_results.json"
    results.unlink(missing_ok=True)
    started = time.perf_counter()
    done = run_dbt(
        [*args, "--target-path", str(target), "--log-path", str(target / "logs")],
        settings,
        capture=True,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"dbt {' '.join(args)} failed:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    elapsed = json.loads(results.read_text())["elapsed_time"] if results.exists() else 0.0
    return wall, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median shown)")
    parser.add_argument(
        "--bytecode-cache", action="store_true", help="cache dbt's bytecode (see the docstring)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    options = parser.parse_args()

    files = shared_month_files()
    if not files:
        sys.exit("The shared reference deliveries are missing (../shared/data/hdb_resale/monthly).")

    work = Path(tempfile.mkdtemp(prefix="hdb-dbt-bench-"))
    if options.bytecode_cache:
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    try:
        figures = run(work, files, options.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(figures, options.repeat)
    if options.json:
        options.json.write_text(json.dumps(figures, indent=2) + "\n")


def run(work: Path, files: list[Path], repeat: int) -> dict:
    target = work / "target"
    raw_only = work / "raw_only.duckdb"
    load_deliveries(raw_only, files)
    march = next(p for p in files if p.stem.endswith(ONE_MONTH))
    warehouse = work / "warehouse.duckdb"
    shutil.copyfile(raw_only, warehouse)

    figures: dict[str, list] = {key: [] for key in ("startup", *LABELS)}
    for attempt in range(repeat):
        timed_dbt(["parse"], warehouse, target)  # (re)writes the manifest partial parsing reuses
        figures["startup"].append(timed_dbt(["parse"], warehouse, target))

        shutil.copyfile(raw_only, warehouse)  # fresh marts, same raw
        figures["full"].append(timed_dbt(["build"], warehouse, target))

        # The pipeline's path (load, validate, dbt build) runs with the same (no) vars each
        # time, so partial parsing holds; a --vars window changes them and re-parses.
        for key, args in (
            ("month_default", ["build"]),
            ("month_pipeline", ["build", "--exclude-resource-type", "unit_test"]),
            ("month_window", ["build", *window_vars(ONE_MONTH, ONE_MONTH)]),
        ):
            load_deliveries(warehouse, [new_delivery(march, work / key / str(attempt), attempt)])
            figures[key].append(timed_dbt(args, warehouse, target))
    return figures


def new_delivery(month_file: Path, folder: Path, attempt: int) -> Path:
    """A re-delivery of the month: three rows gone, one new sale."""
    delivery = redeliver(
        month_file, folder / month_file.name, drop_lines=[2 + attempt, 100, 101], add_rows=[]
    )
    with delivery.open("a", encoding="utf-8") as handle:
        handle.write(f"{ONE_MONTH},BEDOK,4 ROOM,1,BEDOK NTH RD,04 TO 06,92,Model A,")
        handle.write(f"1980,55 years,{500000 + attempt}\n")
    return delivery


def report(figures: dict, repeat: int) -> None:
    def median(key: str, index: int) -> float:
        return statistics.median(value[index] for value in figures[key])

    startup = median("startup", 0)
    print(f"dbt build benchmark, median of {repeat} (wall seconds of the dbt subprocess)")
    print(f"  {'dbt start-up (dbt parse with a saved manifest)':<52} {startup:5.2f} s")
    for key, (label, goal) in LABELS.items():
        wall, inside = median(key, 0), median(key, 1)
        print(
            f"  {label:<52} {wall:5.2f} s  (dbt's own run {inside:4.2f} s; start-up share "
            f"{startup / wall:4.0%}; goal < {goal:.0f} s: {'met' if wall < goal else 'missed'})"
        )
    print(f"  (load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores at the end)")


if __name__ == "__main__":
    main()
