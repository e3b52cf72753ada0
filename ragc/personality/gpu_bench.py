"""GPU side of `ragc profile`: the CPU's one-op graphs through codegen.gpu.emit and runtime_min's Vulkan backend.

Op samples are the GPU's own timestamps (sum of the op's dispatches); the launch overhead is a tiny op's wall time
minus its kernel time; what remains of each wall time is the copy of its inputs in and outputs out, fitted to
latency + bytes / bandwidth for the cpu<->gpu transfer figures.
"""

from __future__ import annotations

import importlib.util
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragc.ir import Graph
from ragc.opstats import op_features
from ragc.personality.oneop import random_feeds

MIN_MS = 1e-4


@dataclass
class GpuProfile:
    device: dict[str, Any]
    transfers: dict[str, dict[str, float]]
    unified: bool


class GpuTimer:
    """Runs one-op graphs as GPU partitions: (wall ms, GPU kernel ms) medians, or None when the GPU cannot run it."""

    def __init__(self, backend: Any):
        self.backend = backend

    def __call__(self, graph: Graph, budget_s: float) -> tuple[float, float] | None:
        exe = self.prepare(graph)
        if exe is None:
            return None
        try:
            return _time_runs(exe, random_feeds(graph), budget_s)
        finally:
            exe.close()

    def prepare(self, graph: Graph) -> Any | None:
        """The graph as one GPU partition, ready to run; None when the GPU cannot run every op of it."""
        from codegen.gpu import emit, unsupported_reason
        from codegen.gpu_lowering import LoweringError

        if any(unsupported_reason(graph, op) for op in graph.ops):
            return None
        try:
            artifact = emit(graph, "bench")
        except LoweringError:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in artifact.files.items():
                (Path(tmp) / name).write_bytes(data)
            partition = {
                "id": "bench",
                "device": "gpu",
                "artifact": {"format": artifact.format, "files": sorted(artifact.files), **artifact.meta},
            }
            return self.backend.prepare(partition, Path(tmp))


def _time_runs(exe: Any, feeds: dict[str, np.ndarray], budget_s: float) -> tuple[float, float]:
    start = time.perf_counter()
    exe.run(feeds)
    repeats = max(3, min(200, int(budget_s / max(time.perf_counter() - start, 1e-6))))
    walls, kernels = [], []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        exe.run(feeds)
        walls.append((time.perf_counter_ns() - t0) / 1e6)
        kernels.append(sum(t.duration_ns for t in exe.timings()) / 1e6)
    return statistics.median(walls), statistics.median(kernels)


def fit_transfer(points: list[tuple[float, float]]) -> dict[str, float]:
    """Least-squares latency (ms) and bandwidth (GB/s) from (bytes, ms) points, both kept positive."""
    x = np.array([p[0] for p in points], dtype=float)
    y = np.array([p[1] for p in points], dtype=float)
    slope, intercept = np.polyfit(x, y, 1) if len(points) > 1 else (y[0] / max(x[0], 1.0), 0.0)
    return {"latency_ms": float(max(intercept, 0.0)), "gbps": float(1.0 / max(slope, 1e-9) / 1e6)}


def profile_gpu(
    facts: dict[str, Any], specs: list[tuple[str, Graph]], budget_s: float, bar: Any, task: Any
) -> GpuProfile | None:
    """None when there is no Vulkan device, or codegen.gpu / the Vulkan backend are missing or cannot start; a
    device failure while profiling is reported and the GPU left out (the CPU's profile still counts)."""
    if not facts["gpus"] or importlib.util.find_spec("codegen.gpu") is None:
        return None
    try:
        from runtime_min.backends.vulkan import VulkanBackend
        from runtime_min.errors import BackendUnavailable, RuntimeMinError
    except ImportError:
        return None
    try:
        backend = VulkanBackend({"timestamps": True})
    except BackendUnavailable:
        return None
    try:
        return _profile(backend, _heap_bytes(facts, str(backend.device_name)), specs, budget_s, bar, task)
    except RuntimeMinError as exc:
        bar.console.print(f"ragc: the GPU failed while profiling ({exc}); profiled the CPU only")
        return None
    finally:
        backend.close()


def _heap_bytes(facts: dict[str, Any], name: str) -> int:
    """The largest device-local heap of the Vulkan device the backend opened (memory capacity)."""
    gpu = next((g for g in facts["gpus"] if g["name"] == name), facts["gpus"][0])
    return max((h["bytes"] for h in gpu["heaps"] if h["device_local"]), default=0)


def _profile(
    backend: Any, heap: int, specs: list[tuple[str, Graph]], budget_s: float, bar: Any, task: Any
) -> GpuProfile:
    from ragc.personality.profile import chain, device_entry

    timer = GpuTimer(backend)
    bar.update(task, description="gpu", total=len(specs), completed=0)
    one = timer(chain(1), 4 * budget_s)
    many = timer(chain(32), 4 * budget_s)
    dispatch = max(MIN_MS, one[0] - one[1]) if one else 0.0
    per_op = max(0.0, (many[1] - one[1]) / 31) if one and many else 0.0
    samples, copies = [], []
    for label, graph in specs:
        bar.update(task, advance=1, label=label)
        measured = timer(graph, budget_s)
        if measured is None:
            continue
        wall, kernel = measured
        op = graph.ops[0]
        features = op_features(graph, op)
        samples.append(
            {
                "op_type": op.op_type,
                "label": label,
                "features": features,
                "ms": max(MIN_MS, kernel),
                "source": "profile",
            }
        )
        copied = features["bytes_in"] - features["weight_bytes"] + features["bytes_out"]
        copies.append((copied, wall - kernel - dispatch))
    link = fit_transfer(copies)
    return GpuProfile(
        device=device_entry(str(backend.device_name), samples, dispatch, per_op, heap),
        transfers={"cpu->gpu": link, "gpu->cpu": dict(link)},
        unified=bool(backend.unified_memory),
    )
