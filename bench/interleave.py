"""Several callables timed in interleaved rounds in one process, so that a machine changing speed hurts all alike:
the median over rounds of each one's median of a round."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_ms(fns: dict[str, Callable[[], object]], rounds: int = 5, runs: int = 10) -> dict[str, float]:
    for fn in fns.values():
        fn(), fn()  # warm
    per: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(rounds):
        names = list(fns) if r % 2 == 0 else list(fns)[::-1]
        for name in names:
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                fns[name]()
                times.append((time.perf_counter() - start) * 1e3)
            per[name].append(statistics.median(times))
    return {name: statistics.median(v) for name, v in per.items()}
