"""What `ragc run` does around runtime_min: timed runs, streams, per-partition timings, recording."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from ragc.errors import UsageError


def timed_runs(plan: Any, feeds: dict[str, np.ndarray], repeat: int, trace: Path | None = None):
    """One warm-up run, then `repeat` timed runs; returns the last outputs, each timed run's seconds, and each
    timed run's per-step times. The trace, if asked for, is of the last run."""
    plan.run(feeds)
    outputs, seconds, steps = {}, [], []
    for index in range(repeat):
        start = time.perf_counter()
        outputs = plan.run(feeds, trace=trace if index == repeat - 1 else None)
        seconds.append(time.perf_counter() - start)
        steps.append(plan.last_step_times())
    return outputs, seconds, steps


def timed_stream(plan: Any, feeds: dict[str, np.ndarray], frames: int, depth: int, trace: Path | None = None):
    """Frames per second of the assembly line over `frames` copies of `feeds` (after one warm-up run)."""
    plan.run(feeds)
    start = time.perf_counter()
    count = sum(1 for _ in plan.stream((feeds for _ in range(frames)), depth=depth, trace=trace))
    return count / (time.perf_counter() - start)


def step_medians(steps: list[list[dict[str, Any]]]) -> dict[str, tuple[str, float]]:
    """Partition -> (processor it ran on, median ms over runs)."""
    by_partition: dict[str, list[float]] = {}
    device: dict[str, str] = {}
    for run in steps:
        for step in run:
            by_partition.setdefault(step["partition"], []).append(step["duration_ms"])
            device[step["partition"]] = step["device"]
    return {p: (device[p], statistics.median(v)) for p, v in by_partition.items()}


def print_step_table(plan: Any, medians: dict[str, tuple[str, float]], console: Console | None = None) -> None:
    table = Table(title="per-partition times (median)")
    for column in ("partition", "planned on", "ran on", "ops", "predicted ms", "measured ms"):
        table.add_column(column, justify="right" if column in ("ops", "predicted ms", "measured ms") else "left")
    for part in plan.schedule["partitions"]:
        ran_on, measured = medians.get(part["id"], ("-", float("nan")))
        predicted = part.get("predicted_ms")
        table.add_row(
            part["id"],
            part["device"],
            ran_on,
            str(len(part["ops"])),
            "-" if predicted is None else f"{predicted:.3f}",
            f"{measured:.3f}",
        )
    (console or Console()).print(table)


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
