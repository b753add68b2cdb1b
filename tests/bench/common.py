"""Helpers shared by the benchmarks: timing, medians and the machine description."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import TextIO


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(
    a: Callable[[], object], b: Callable[[], object], repeats: int
) -> tuple[list[float], list[float]]:
    """Time ``a`` and ``b`` alternately so both see the same machine noise; return both samples."""
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(timed(a))
        tb.append(timed(b))
    return ta, tb


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}"


def markdown_report() -> TextIO:
    """The stream a benchmark writes its markdown to: the real stdout.

    Everything else written on fd 1 from then on (MLflow's run links, Airflow's and Feast's logs) goes to
    stderr, so library chatter never lands in docs/benchmarks.md.
    """
    report = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return report
