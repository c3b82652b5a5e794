"""Benchmark the stage notebooks: wall time per notebook, kernel start-up separated from work.

    python -m bench.notebooks [--data-dir ../shared/data/hdb_resale/monthly] [--repeat 2]

Each repeat runs the five notebooks with papermill into a new warehouse, for one month and for
the 12 months of 2023. Kernel start-up is measured on its own (start a kernel, wait until it
answers, shut it down) and subtracted to give each notebook's work.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from jupyter_client.manager import start_new_kernel

from hdb_elt.settings import REPO_ROOT, stage_settings
from hdb_elt.stage_notebooks import KERNEL, STAGES, run_stages

SHARED = (REPO_ROOT / ".." / "shared" / "data" / "hdb_resale" / "monthly").resolve()


def kernel_startup_seconds(repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        manager, client = start_new_kernel(kernel_name=KERNEL)
        times.append(time.perf_counter() - started)
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    return statistics.median(times)


def stage_times(data_dir: Path, start: str, end: str, repeat: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            settings = stage_settings(start, end, Path(tmp) / "w.duckdb", data_dir)
            for run in run_stages(settings, Path(tmp) / "run"):
                times[run.stage].append(run.seconds)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=SHARED)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    kernel = kernel_startup_seconds()
    print(f"kernel start-up (median of 3): {kernel:.2f} s\n")
    print(f"{'window':<18}{'notebook':<18}{'median s':>10}{'min s':>8}{'max s':>8}{'work s':>8}")
    for start, end in (("2023-06", "2023-06"), ("2023-01", "2023-12")):
        times = stage_times(args.data_dir, start, end, args.repeat)
        for stage, values in times.items():
            median = statistics.median(values)
            print(
                f"{start + '..' + end:<18}{stage:<18}{median:>10.2f}{min(values):>8.2f}"
                f"{max(values):>8.2f}{max(median - kernel, 0):>8.2f}"
            )
        total = sum(statistics.median(v) for v in times.values())
        print(
            f"{start + '..' + end:<18}{'all five':<18}{total:>10.2f}"
            f"{'':>16}{max(total - 5 * kernel, 0):>8.2f}\n"
        )


if __name__ == "__main__":
    main()
