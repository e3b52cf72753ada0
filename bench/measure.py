"""Timing, percentiles and peak memory of one system on one model."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Timing:
    times_ms: list[float]
    warmup: int
    note: str | None = None  # set when the run count was cut to stay inside the time cap

    def summary(self) -> dict[str, float | int | str | None]:
        p10, median, p90 = np.percentile(self.times_ms, [10, 50, 90])
        return {
            "median_ms": float(median),
            "p10_ms": float(p10),
            "p90_ms": float(p90),
            "runs": len(self.times_ms),
            "warmup": self.warmup,
        }


def time_runs(fn: Callable[[], object], runs: int, warmup: int, cap_s: float) -> Timing:
    """`warmup` untimed calls then `runs` timed ones; fewer (at least 1) when they would not fit in `cap_s`."""
    start = time.perf_counter()
    fn()  # the first call: always untimed (lazy set-up in some runtimes)
    first_s = time.perf_counter() - start
    fit = int(cap_s / max(first_s, 1e-9))
    warm = min(max(warmup - 1, 0), max(fit - runs, 0))
    count = max(1, min(runs, fit - warm))
    for _ in range(warm):
        fn()
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    note = None if count == runs else f"{count} timed runs instead of {runs}: one run took {first_s:.2f} s"
    return Timing(times, warm + 1, note)


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter for this process (Linux); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """This process's peak resident memory since the last reset (or since start where reset is impossible)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
