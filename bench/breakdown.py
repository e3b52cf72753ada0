"""Where the time goes: measured time per plan partition, and per-operator cost from an onnxruntime profile."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

Feeds = dict[str, np.ndarray]


def partition_times(plan: Any, feeds: Feeds, repeats: int = 5) -> list[dict[str, Any]] | None:
    """Median ms per partition over `repeats` runs of a runtime_min Plan (its `last_step_times`), schedule order;
    None when the runtime does not report step times."""
    if not hasattr(plan, "last_step_times"):
        return None
    samples: dict[str, list[float]] = {}
    ran_on: dict[str, str] = {}
    for _ in range(repeats):
        plan.run(feeds)
        for step in plan.last_step_times():
            samples.setdefault(step["partition"], []).append(step["duration_ms"])
            ran_on[step["partition"]] = step["device"]
    return [
        {
            "id": p["id"],
            "device": p["device"],
            "ran_on": ran_on[p["id"]],
            "ops": list(p["ops"]),
            "measured_ms": statistics.median(samples[p["id"]]),
        }
        for p in plan.schedule["partitions"]
        if p["id"] in samples
    ] or None


def ort_op_profile(model: Path, feeds: Feeds, workdir: Path, repeats: int = 5) -> dict[str, dict[str, Any]]:
    """Median ms per node of the original model under onnxruntime's CPU profiler: {node: {op_type, ms}}.

    Graph optimizations are off so that node names (and costs) are those of the model's own operators."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(workdir / "ort-profile")
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    for _ in range(repeats + 1):  # the first run pays one-time set-up: the median below ignores it
        session.run(None, feeds)
    events = json.loads(Path(session.end_profiling()).read_text())
    samples: dict[str, list[float]] = {}
    op_type: dict[str, str] = {}
    for event in events:
        name = event.get("name", "")
        if event.get("cat") == "Node" and name.endswith("_kernel_time"):
            node = name.removesuffix("_kernel_time")
            samples.setdefault(node, []).append(event["dur"] / 1e3)
            op_type[node] = event["args"]["op_name"]
    return {node: {"op_type": op_type[node], "ms": statistics.median(ms)} for node, ms in sorted(samples.items())}


def costliest(partitions: list[dict[str, Any]], profile: dict[str, dict[str, Any]], top: int = 5) -> dict[str, Any]:
    """The slowest partition and its costliest operators by the CPU profile (ops the profile lacks are skipped)."""
    slowest = max(partitions, key=lambda p: p["measured_ms"])
    ops = sorted(
        ({"name": o, **profile[o]} for o in slowest["ops"] if o in profile), key=lambda o: (-o["ms"], o["name"])
    )
    by_type: dict[str, float] = {}
    for op in ops:
        by_type[op["op_type"]] = by_type.get(op["op_type"], 0.0) + op["ms"]
    return {
        "partition": slowest["id"],
        "device": slowest["ran_on"],
        "measured_ms": slowest["measured_ms"],
        "top_ops": ops[:top],
        "op_types_cpu_ms": [{"op_type": t, "ms": ms} for t, ms in sorted(by_type.items(), key=lambda kv: -kv[1])][:top],
    }
