"""Benchmark extract-load: wall time, rows/s and peak memory for one month and for 12 months.

    python -m bench.extract_load [--data-dir ../shared/data/hdb_resale/monthly] [--repeat 3]

Each run loads into a new warehouse file, so it measures a first load (Meltano start-up,
tap, loader and commit included), as a learner's `make run` on a fresh clone does.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from bench.measure import measure
from hdb_elt.extract_load import run_extract_load
from hdb_elt.settings import REPO_ROOT, load_settings

SHARED = REPO_ROOT / ".." / "shared" / "data" / "hdb_resale" / "monthly"


def bench_window(data_dir: Path, start: str, end: str, repeat: int) -> dict:
    runs = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            settings = load_settings(
                {
                    "HDB_RESALE_DATA_DIR": str(data_dir),
                    "HDB_WAREHOUSE_PATH": str(Path(tmp) / "bench.duckdb"),
                    "HDB_START_MONTH": start,
                    "HDB_END_MONTH": end,
                },
                dotenv=False,
            )
            runs.append(measure(lambda s=settings: run_extract_load(s)))
    rows = runs[0].result.rows
    times = [r.seconds for r in runs]
    return {
        "window": f"{start}..{end}",
        "rows": rows,
        "min_s": min(times),
        "median_s": statistics.median(times),
        "max_s": max(times),
        "rows_per_s": rows / statistics.median(times),
        "peak_rss_mib": max(r.peak_rss_mib for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=SHARED.resolve())
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(
        f"{'window':<18}{'rows':>8}{'min s':>8}{'median s':>10}{'max s':>8}"
        f"{'rows/s':>10}{'peak MiB':>10}"
    )
    for start, end in (("2023-06", "2023-06"), ("2023-01", "2023-12")):
        r = bench_window(args.data_dir, start, end, args.repeat)
        print(
            f"{r['window']:<18}{r['rows']:>8,}{r['min_s']:>8.2f}{r['median_s']:>10.2f}"
            f"{r['max_s']:>8.2f}{r['rows_per_s']:>10,.0f}{r['peak_rss_mib']:>10.0f}"
        )


if __name__ == "__main__":
    main()
