"""What `ragc run` does around runtime_min: warm-up and timed runs (a count or a time budget), streams, the
per-partition and per-stage timings of those runs, and recording them into the personality."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ragc.cli.output import progress
from ragc.errors import UsageError


@dataclass
class Timed:
    """What a benchmark measured: the last outputs, each timed run's seconds and per-partition step times."""

    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)
    steps: list[list[dict[str, Any]]] = field(default_factory=list)
    elapsed_s: float = 0.0  # wall time of the timed part (for a stream: first frame in to last frame out)


def _budget(repeat: int | None, seconds: float | None) -> Iterator[int]:
    """Run indices: `repeat` of them, or as many as start within `seconds` (at least one)."""
    if seconds is None:
        yield from range(repeat or 1)
        return
    end, index = time.perf_counter() + seconds, 0
    while index == 0 or time.perf_counter() < end:
        yield index
        index += 1


def timed_runs(
    plan: Any,
    feeds: dict[str, np.ndarray],
    warmup: int,
    repeat: int | None,
    seconds: float | None = None,
    trace: Path | None = None,
) -> Timed:
    """`warmup` untimed runs, then `repeat` timed runs (or as many as fit in `seconds`); the trace, if asked
    for, is of the last timed run."""
    for _ in range(warmup):
        plan.run(feeds)
    result = Timed()
    total = None if seconds is not None else repeat
    started = time.perf_counter()
    with progress("timing runs", total) as advance:
        for index in _budget(repeat, seconds):
            last = seconds is None and index == (repeat or 1) - 1
            start = time.perf_counter()
            result.outputs = plan.run(feeds, trace=trace if last else None)
            result.seconds.append(time.perf_counter() - start)
            result.steps.append(plan.last_step_times())
            advance("")
    if trace is not None and seconds is not None:
        plan.run(feeds, trace=trace)  # a time budget has no known last run: trace one more
    result.elapsed_s = time.perf_counter() - started
    return result


def timed_stream(
    plan: Any, feeds: dict[str, np.ndarray], frames: int, depth: int, warmup: int, trace: Path | None = None
) -> Timed:
    """`frames` copies of `feeds` through the assembly line after `warmup` plain runs; per frame, its partitions'
    step times (the frame just handed back is the plan's last finished one)."""
    for _ in range(warmup):
        plan.run(feeds)
    result = Timed()
    with progress("streaming", frames) as advance:
        start = time.perf_counter()
        for outputs in plan.stream((feeds for _ in range(frames)), depth=depth, trace=trace):
            result.outputs = outputs
            result.steps.append(plan.last_step_times())
            advance("")
        result.elapsed_s = time.perf_counter() - start
    return result


def step_medians(steps: list[list[dict[str, Any]]]) -> dict[str, tuple[str, float]]:
    """Partition -> (processor it ran on, median ms over runs)."""
    by_partition: dict[str, list[float]] = {}
    device: dict[str, str] = {}
    for run in steps:
        for step in run:
            by_partition.setdefault(step["partition"], []).append(step["duration_ms"])
            device[step["partition"]] = step["device"]
    return {p: (device[p], statistics.median(v)) for p, v in by_partition.items()}


def record(plan_dir: Path, plan: Any, medians: dict[str, tuple[str, float]]) -> int:
    """Append the measured partition times to this chip's personality; returns how many partitions."""
    import json

    from ragc.personality.store import current_chip_id
    from ragc.profiler.record import record_run

    chip = plan.manifest.get("chip_id")
    if chip != current_chip_id():
        raise UsageError(
            f"this plan was compiled for chip {chip}, not this one; --record only learns from plans "
            "compiled for the chip they run on"
        )
    op_stats = json.loads((Path(plan_dir) / "opstats.json").read_text())
    samples = [
        {"device": device, "ms": ms, "ops": op_stats[pid]}
        for pid, (device, ms) in sorted(medians.items())
        if device == next(p["device"] for p in plan.schedule["partitions"] if p["id"] == pid) and ms > 0
    ]
    record_run(None, samples)  # None: this chip's stored personality
    return len(samples)
