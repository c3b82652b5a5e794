"""Extract-load, ours beside the floor and its peers, on the same files in one run.

    python -m bench.extract_load --data-dir data/bench/synthetic_1m --start 1990-01 --end 2025-12
    python -m bench.extract_load --no-peers --repeat 3        # 2023 from the reference deliveries

The paths, each into a new DuckDB file: **ours** (``meltano run tap-hdb-resale
target-hdb-duckdb`` through ``hdb_elt.extract_load``, every check, lineage column and guarantee
included), the **floor** (``bench.floor``'s extract-load: DuckDB's own CSV reader into a raw
table, in this process), and the peers of ``bench.peers`` (dlt's Arrow path; our tap into
PyPI's target-duckdb), installed on first use in their own environments. For each: seconds
(median of the repeats), the ratio to the floor, and the rows landed; a path landing fewer rows
than the files hold in the window is marked as losing rows.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from bench import floor
from bench.peers import PeerRun, PeerUnavailable, run_dlt, run_target_duckdb
from hdb_elt.extract_load import run_extract_load
from hdb_elt.settings import REPO_ROOT, load_settings

SHARED = (REPO_ROOT / ".." / "shared" / "data" / "hdb_resale" / "monthly").resolve()
OURS = "ours: Meltano, tap-hdb-resale (BATCH) -> target-hdb-duckdb"
FLOOR = "floor: DuckDB read_csv into a raw table"
PEERS = {
    "dlt (Arrow) -> duckdb": run_dlt,
    "tap-hdb-resale (RECORD) into target-duckdb 0.8.0": run_target_duckdb,
}


def run_ours(data_dir: Path, start: str, end: str, work: Path, log=print) -> PeerRun:
    settings = load_settings(
        {
            "HDB_RESALE_DATA_DIR": str(data_dir),
            "HDB_WAREHOUSE_PATH": str(work / "ours.duckdb"),
            "HDB_START_MONTH": start,
            "HDB_END_MONTH": end,
        },
        dotenv=False,
    )
    started = time.perf_counter()
    result = run_extract_load(settings)
    return PeerRun(time.perf_counter() - started, result.rows)


def run_floor(data_dir: Path, start: str, end: str, work: Path, log=print) -> PeerRun:
    files = sorted(p for p in data_dir.iterdir() if p.name.lower().endswith(".csv"))
    started = time.perf_counter()
    with duckdb.connect(str(work / "floor.duckdb")) as con:
        floor.extract_load(con, files, start, end)
        (rows,) = con.execute("select count(*) from raw_rows").fetchone()
    return PeerRun(time.perf_counter() - started, rows)


def compare(
    data_dir: Path,
    start: str,
    end: str,
    *,
    repeat: int = 1,
    peers: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Each path's seconds (min/median/max), rows landed and ratio to the floor."""
    paths: dict[str, Callable] = {FLOOR: run_floor, OURS: run_ours}
    if peers:
        paths.update(PEERS)
    results: dict[str, dict] = {}
    for name, run in paths.items():
        runs: list[PeerRun] = []
        try:
            for _ in range(repeat):
                with tempfile.TemporaryDirectory(prefix="bench-el-") as tmp:
                    runs.append(run(data_dir, start, end, Path(tmp), log=log))
        except PeerUnavailable as error:
            log(f"  {name}: left out ({error})")
            continue
        seconds = [r.seconds for r in runs]
        results[name] = {
            "min_s": min(seconds),
            "median_s": statistics.median(seconds),
            "max_s": max(seconds),
            "rows": runs[-1].rows,
        }
        log(f"  {name}: {results[name]['median_s']:.2f} s, {runs[-1].rows:,} rows")
    expected = results[FLOOR]["rows"]
    for result in results.values():
        result["ratio_to_floor"] = result["median_s"] / results[FLOOR]["median_s"]
        result["lost_rows"] = expected - result["rows"]
    return {"window": f"{start}..{end}", "rows": expected, "paths": results}


def table(comparison: dict) -> str:
    """The comparison as Markdown: each path beside the floor."""
    lines = [
        f"Extract-load, {comparison['window']}, {comparison['rows']:,} rows in the files:",
        "",
        "| path | seconds | x floor | rows landed |",
        "|---|---:|---:|---|",
    ]
    for name, result in comparison["paths"].items():
        landed = f"{result['rows']:,}"
        if result["lost_rows"] > 0:
            landed += f" (loses {result['lost_rows']:,} of {comparison['rows']:,})"
        lines.append(
            f"| {name} | {result['median_s']:.2f} | {result['ratio_to_floor']:.1f}x | {landed} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=SHARED)
    parser.add_argument("--start", default="2023-01")
    parser.add_argument("--end", default="2023-12")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-peers", action="store_true", help="ours and the floor only")
    args = parser.parse_args()
    comparison = compare(
        args.data_dir.resolve(), args.start, args.end, repeat=args.repeat, peers=not args.no_peers
    )
    print("\n" + table(comparison))


if __name__ == "__main__":
    main()
