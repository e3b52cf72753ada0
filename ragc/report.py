"""What the CLI shows about a plan: the partition table, a JSON summary, random feeds, medians."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table


def plan_summary(plan_dir: str | Path) -> dict[str, Any]:
    """The stable `ragc inspect --json` view; tools rely on these keys."""
    from runtime_min.manifest import read_bundle

    _, manifest, schedule = read_bundle(plan_dir)
    return {
        "predicted_ms": manifest.get("predicted_ms"),
        "solver": manifest.get("solver"),
        "gap": manifest.get("gap"),
        "objective": schedule.get("objective"),
        "processors": schedule["processors"],
        "partitions": [
            {"id": p["id"], "device": p["device"], "ops": p["ops"], "predicted_ms": p.get("predicted_ms")}
            for p in schedule["partitions"]
        ],
        "transfers": schedule.get("transfers", []),
    }


def print_partitions(plan_dir: str | Path, console: Console | None = None) -> None:
    summary = plan_summary(plan_dir)
    table = Table(title=f"plan {plan_dir} (solver {summary['solver']})")
    for column in ("partition", "processor", "ops", "first op", "predicted ms"):
        table.add_column(column, justify="right" if column in ("ops", "predicted ms") else "left")
    for p in summary["partitions"]:
        table.add_row(p["id"], p["device"], str(len(p["ops"])), p["ops"][0], _ms(p["predicted_ms"]))
    table.caption = f"predicted latency {_ms(summary['predicted_ms'])} ms; {len(summary['transfers'])} transfers"
    (console or Console()).print(table)


def random_feeds(specs, seed: int = 0) -> dict[str, np.ndarray]:
    """Fresh random inputs for a plan's (or model's) input specs: floats in [0, 1), small ints, random bools."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in specs:
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            feeds[spec.name] = rng.random(spec.shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[spec.name] = rng.random(spec.shape) < 0.5
        else:
            feeds[spec.name] = rng.integers(0, 2, spec.shape).astype(dtype)
    return feeds


def median_ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1e3


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
