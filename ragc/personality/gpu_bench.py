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
from ragc.personality.steady import BlockTimer, Gate, chunks, time_interleaved

MIN_MS = 1e-4
MAX_REPEATS = 200


@dataclass
class GpuProfile:
    device: dict[str, Any]
    transfers: dict[str, dict[str, float]]
    unified: bool


def prepare_gpu(backend: Any, graph: Graph) -> Any | None:
    """The graph as one GPU partition, ready to run on `backend`; None when the GPU cannot run every op of it."""
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
        return backend.prepare(partition, Path(tmp))


class GpuGraphTimer(BlockTimer):
    """One prepared GPU partition timed in blocks (see steady.time_interleaved): per block the median wall ms of a
    run (inputs copied in, outputs copied out) and, per dispatch label, the median of its GPU timestamps."""

    def __init__(self, exe: Any, graph: Graph, label: str = ""):
        super().__init__(label)
        self.exe, self.feeds = exe, random_feeds(graph)
        self.blocks: list[tuple[float, dict[str, float]]] = []

    def block(self, budget_s: float) -> None:
        start = time.perf_counter()
        self.exe.run(self.feeds)  # warm-up
        first = time.perf_counter() - start  # a run longer than the block (a big model on lavapipe) is timed once
        repeats = 1 if first >= budget_s else max(3, min(MAX_REPEATS, int(budget_s / max(first, 1e-6))))
        walls, kernels = [], []
        for _ in range(repeats):
            t0 = time.perf_counter_ns()
            self.exe.run(self.feeds)
            walls.append((time.perf_counter_ns() - t0) / 1e6)
            per_label: dict[str, float] = {}
            for t in self.exe.timings():
                per_label[t.label] = per_label.get(t.label, 0.0) + t.duration_ns / 1e6
            kernels.append(per_label)
        labels = kernels[0].keys()
        self.blocks.append((statistics.median(walls), {k: statistics.median(r[k] for r in kernels) for k in labels}))

    def fastest(self) -> tuple[float, dict[str, float]]:
        """(wall ms, label -> kernel ms) of the fastest counted block."""
        return min(self.counted(self.blocks), key=lambda b: b[0])

    def kernel_ms(self) -> float:
        """Summed GPU time of all dispatches in the fastest counted block."""
        return sum(self.fastest()[1].values())


def fit_transfer(points: list[tuple[float, float]]) -> dict[str, float]:
    """Least-squares latency (ms) and bandwidth (GB/s) from (bytes, ms) points, both kept positive."""
    x = np.array([p[0] for p in points], dtype=float)
    y = np.array([p[1] for p in points], dtype=float)
    slope, intercept = np.polyfit(x, y, 1) if len(points) > 1 else (y[0] / max(x[0], 1.0), 0.0)
    return {"latency_ms": float(max(intercept, 0.0)), "gbps": float(1.0 / max(slope, 1e-9) / 1e6)}


def profile_gpu(
    facts: dict[str, Any], specs: list[tuple[str, Graph]], budget_s: float, rounds: int, bar: Any, task: Any, gate: Gate
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
        heap = _heap_bytes(facts, str(backend.device_name))
        return _profile(backend, heap, specs, budget_s, rounds, bar, task, gate)
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
    backend: Any,
    heap: int,
    specs: list[tuple[str, Graph]],
    budget_s: float,
    rounds: int,
    bar: Any,
    task: Any,
    gate: Gate,
) -> GpuProfile:
    from ragc.personality.profile import bar_advance, chain, device_entry

    bar.update(task, description="gpu", total=(len(specs) + 2) * rounds, completed=0)
    timed: list[tuple[Graph, GpuGraphTimer]] = []
    for chunk in chunks([("chain 1", chain(1)), ("chain 32", chain(32)), *specs]):
        timers = []
        for label, graph in chunk:
            exe = prepare_gpu(backend, graph)
            if exe is not None:
                timers.append(GpuGraphTimer(exe, graph, label))
                timed.append((graph, timers[-1]))
        try:
            time_interleaved(timers, budget_s, rounds, bar_advance(bar, task), gate)
        finally:
            for t in timers:
                t.exe.close()
    chains = {t.label: t for _, t in timed if t.label.startswith("chain ")}
    one, many = chains.get("chain 1"), chains.get("chain 32")
    dispatch = max(MIN_MS, one.fastest()[0] - one.kernel_ms()) if one else 0.0
    per_op = max(0.0, (many.kernel_ms() - one.kernel_ms()) / 31) if one and many else 0.0
    samples, copies = [], []
    for graph, timer in timed[len(chains) :]:
        wall, kernel = timer.fastest()[0], timer.kernel_ms()
        op = graph.ops[0]
        features = op_features(graph, op)
        sample = {"op_type": op.op_type, "label": timer.label, "features": features, "ms": max(MIN_MS, kernel)}
        samples.append(sample | {"source": "profile"})
        copied = features["bytes_in"] - features["weight_bytes"] + features["bytes_out"]
        copies.append((copied, wall - kernel - dispatch))
    link = fit_transfer(copies)
    return GpuProfile(
        device=device_entry(str(backend.device_name), samples, dispatch, per_op, heap),
        transfers={"cpu->gpu": link, "gpu->cpu": dict(link)},
        unified=bool(backend.unified_memory),
    )
