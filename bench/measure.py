"""Measure a piece of work: wall time and the peak memory of this process and its children."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil


@dataclass
class Measurement:
    seconds: float
    peak_rss_mib: float
    result: Any = None


def _tree_rss(root: psutil.Process) -> int:
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # a child may exit while we look
            total += proc.memory_info().rss
    return total


def measure(work: Callable[[], Any], *, interval: float = 0.05) -> Measurement:
    """Run ``work()``, sampling the summed resident memory of this process tree meanwhile."""
    root = psutil.Process(os.getpid())
    peak = _tree_rss(root)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(interval):
            peak = max(peak, _tree_rss(root))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    try:
        result = work()
    finally:
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
    return Measurement(seconds, peak / 2**20, result)
