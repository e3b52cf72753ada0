"""GPU side of `ragc profile`: the CPU's one-op graphs through codegen.gpu.emit and runtime_min's Vulkan backend.

Op samples are the GPU's own timestamps (sum of the op's dispatches). What remains of each one-op run's wall time
after its kernel and a tiny op's launch is the copy of its inputs in and outputs out, fitted to latency + bytes /
bandwidth for the cpu<->gpu transfer figures. The launch overhead, the per-op overhead and the kernel scale come
from one fit over the multi-op runs, calibration graphs and whole context models (fit_launch): one-op runs, mostly
copies, pinned the scale at its bound on the H200 and under-predicted whole CNNs by 11-21%. The personality keeps
those runs (`launch_runs`) so that the fit can be redone with more of them.
"""

from __future__ import annotations

import importlib.util
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragc.bundle.single import single_partition
from ragc.costmodel.features import op_features
from ragc.costmodel.gpu_fusion import gpu_kernel_features
from ragc.ir import Graph
from ragc.profiler.context import in_context_samples
from ragc.profiler.oneop import random_feeds
from ragc.profiler.steady import BlockTimer, Gate, chunks, time_interleaved

MIN_MS = 1e-4
PROBE_KIND = "gpu"  # the gate's name for the GPU probe's readings (steady.TOLERANCE)
MAX_REPEATS = 200


@dataclass
class GpuProfile:
    device: dict[str, Any]
    transfers: dict[str, dict[str, float]]
    unified: bool


def prepare_gpu(backend: Any, graph: Graph) -> Any | None:
    """The graph as one GPU partition, ready to run on `backend`; None when the GPU cannot run every op of it."""
    prepared = prepare_gpu_on([backend], graph)
    return prepared[0] if prepared else None


def prepare_gpu_on(backends: Sequence[Any], graph: Graph) -> list[Any] | None:
    """The graph compiled once as one GPU partition and prepared on each backend; None when the GPU cannot run
    every op of it."""
    from codegen.gpu import emit, unsupported_reason
    from codegen.gpu.lowering import LoweringError

    if any(unsupported_reason(graph, op) for op in graph.ops):
        return None
    try:
        artifact = emit(graph, "bench")
    except LoweringError:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        partition = single_partition(artifact, graph, Path(tmp), "gpu")
        prepared: list[Any] = []
        try:
            for backend in backends:
                prepared.append(backend.prepare(*partition))
        except BaseException:
            for exe in prepared:
                exe.close()
            raise
        return prepared


def timed_graph(backends: tuple[Any, Any], graph: Graph, label: str) -> GpuGraphTimer | None:
    """A timer of the graph on (timestamped, plain) backends (see GpuGraphTimer); None where the GPU cannot run it."""
    prepared = prepare_gpu_on(backends, graph)
    return GpuGraphTimer(prepared[0], graph, label, prepared[1]) if prepared else None


@contextmanager
def timing_backends() -> Iterator[tuple[Any, Any]]:
    """Vulkan backends for GpuGraphTimer: one writing GPU timestamps, one not (BackendUnavailable without a GPU)."""
    from runtime_min.backends.vulkan import VulkanBackend
    from runtime_min.options import LoadOptions

    timed = VulkanBackend(LoadOptions.make({"timestamps": True}))
    try:
        plain = VulkanBackend(LoadOptions.make({}))
    except BaseException:
        timed.close()
        raise
    try:
        yield timed, plain
    finally:
        plain.close()
        timed.close()


@contextmanager
def gpu_probe(backend: Any, gate: Gate) -> Iterator[None]:
    """While inside, the gate also reads the GPU's state: the wall ms of a run of one small conv partition."""
    from ragc.profiler.specs import conv

    graph = conv(16, 28, 16, 3)
    exe = prepare_gpu(backend, graph)
    feeds = random_feeds(graph)

    def run() -> float:
        start = time.perf_counter_ns()
        exe.run(feeds)
        return (time.perf_counter_ns() - start) / 1e6

    gate.probe.extra[PROBE_KIND] = run
    try:
        yield
    finally:
        del gate.probe.extra[PROBE_KIND]
        exe.close()


class GpuGraphTimer(BlockTimer):
    """One prepared GPU partition timed in blocks (see steady.time_interleaved): per block the median wall ms of a
    run (inputs copied in, outputs copied out) and, per dispatch label, the median of its GPU timestamps. Given a
    `plain` twin prepared without timestamps, the walls are its runs': a timestamp write waits for the dispatches
    before it, which made the timestamped walls of transformers 30-48% longer than their plans' runs (H200)."""

    def __init__(self, exe: Any, graph: Graph, label: str = "", plain: Any | None = None):
        super().__init__(label)
        self.exe, self.plain, self.feeds = exe, plain, random_feeds(graph)
        self.blocks: list[tuple[float, dict[str, float]]] = []

    def block(self, budget_s: float) -> None:
        start = time.perf_counter()
        self._run()  # warm-up
        first = time.perf_counter() - start  # a run longer than the block (a big model on lavapipe) is timed once
        repeats = 1 if first >= budget_s else max(3, min(MAX_REPEATS, int(budget_s / max(first, 1e-6))))
        walls, kernels = [], []
        for _ in range(repeats):
            walls.append(self._run())
            per_label: dict[str, float] = {}
            for t in self.exe.timings():
                per_label[t.label] = per_label.get(t.label, 0.0) + t.duration_ns / 1e6
            kernels.append(per_label)
        labels = kernels[0].keys()
        self.blocks.append((statistics.median(walls), {k: statistics.median(r[k] for r in kernels) for k in labels}))

    def _run(self) -> float:
        """Wall ms of a run of the plain twin (else of the timestamped one), then a timestamped run if there is a
        twin: the latter's timings() are the kernels'."""
        t0 = time.perf_counter_ns()
        (self.plain or self.exe).run(self.feeds)
        wall = (time.perf_counter_ns() - t0) / 1e6
        if self.plain is not None:
            self.exe.run(self.feeds)
        return wall

    def close(self) -> None:
        for exe in (self.exe, self.plain):
            if exe is not None:
                exe.close()

    def walls(self) -> list[float]:
        return [wall for wall, _ in self.blocks]

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
    facts: dict[str, Any],
    specs: list[tuple[str, Graph]],
    models: list[tuple[str, Graph]],
    budget_s: float,
    rounds: int,
    bar: Any,
    task: Any,
    gate: Gate,
) -> GpuProfile | None:
    """None when there is no Vulkan device, or codegen.gpu / the Vulkan backend are missing or cannot start; a
    device failure while profiling is reported and the GPU left out (the CPU's profile still counts)."""
    if not facts["gpus"] or importlib.util.find_spec("codegen.gpu") is None:
        return None
    try:
        from runtime_min.errors import BackendUnavailable, RuntimeMinError
    except ImportError:
        return None
    try:
        with timing_backends() as backends:
            heap = _heap_bytes(facts, str(backends[0].device_name))
            try:
                profile = _profile(backends, heap, specs, models, budget_s, rounds, bar, task, gate)
            except RuntimeMinError as exc:
                bar.console.print(f"ragc: the GPU failed while profiling ({exc}); profiled the CPU only")
                return None
            profile.device["features"] = sorted(k for k, on in backends[0].dev.features.items() if on)  # --precision
            return profile
    except (BackendUnavailable, ImportError):
        return None


def _heap_bytes(facts: dict[str, Any], name: str) -> int:
    """The largest device-local heap of the Vulkan device the backend opened (memory capacity)."""
    gpu = next((g for g in facts["gpus"] if g["name"] == name), facts["gpus"][0])
    return max((h["bytes"] for h in gpu["heaps"] if h["device_local"]), default=0)


def calibration_graphs() -> list[tuple[str, Graph]]:
    """Multi-op graphs whose runs calibrate what a partition adds around its kernels (see fit_launch): 1 to 32
    kernels of microseconds to milliseconds each (chains of ops that GPU codegen does not fuse)."""
    from ragc.profiler.specs import bench_graph, chain, chained, conv, matmul

    softmax = bench_graph("Softmax", [((8, 128, 128), False)], {"axis": -1})
    return [
        ("launch 1", chain(1)),
        ("launch 32", chain(32)),
        ("launch conv3x3 x8", chained(conv(32, 56, 32, 3), 8)),
        ("launch conv1x1 x16", chained(conv(64, 28, 64, 1), 16)),
        ("launch depthwise x24", chained(conv(16, 112, 16, 3, 1, 16), 24)),
        ("launch matmul x12", chained(matmul((1, 128, 256), (256, 256)), 12)),
        ("launch softmax x8", chained(softmax, 8)),
    ]


def fit_launch(points: Sequence[Sequence[float]]) -> tuple[float, float, float]:
    """(dispatch_ms, op_overhead_ms, kernel_scale) that best explain runs from (kernels, summed kernel ms, wall ms
    with the copies' bandwidth part taken out) as wall = dispatch + kernels * overhead + scale * kernel ms, in
    relative terms (every run counts alike); the scale stays within 0.8..1.25 of the timestamps."""
    from scipy.optimize import lsq_linear

    a = np.array([[1.0, n, k] for n, k, _ in points])
    y = np.array([w for _, _, w in points])
    fit = lsq_linear(a / y[:, None], np.ones(len(y)), bounds=([0.0, 0.0, 0.8], [np.inf, np.inf, 1.25]))
    dispatch, overhead, scale = (float(v) for v in fit.x)
    return dispatch, overhead, scale


def _profile(
    backends: tuple[Any, Any],
    heap: int,
    specs: list[tuple[str, Graph]],
    models: list[tuple[str, Graph]],
    budget_s: float,
    rounds: int,
    bar: Any,
    task: Any,
    gate: Gate,
) -> GpuProfile:
    from ragc.profiler.entries import device_entry
    from ragc.profiler.progress import bar_advance

    calibration = calibration_graphs()
    bar.update(task, description="gpu", total=(len(calibration) + len(specs) + len(models)) * rounds, completed=0)
    timed: list[tuple[Graph, GpuGraphTimer]] = []
    with gpu_probe(backends[0], gate):
        for chunk in chunks([*calibration, *specs, *models]):
            timers = []
            for label, graph in chunk:
                timer = timed_graph(backends, graph, label)
                if timer is not None:
                    timers.append(timer)
                    timed.append((graph, timer))
            try:
                time_interleaved(timers, budget_s, rounds, bar_advance(bar, task), gate)
            finally:
                for t in timers:
                    t.close()
    launches = {t.label: t for _, t in timed if t.label.startswith("launch ")}
    one = launches.get("launch 1")
    first_dispatch = max(MIN_MS, one.fastest()[0] - one.kernel_ms()) if one else 0.0
    samples, copies = [], []
    whole = {name for name, _ in models}
    for graph, timer in timed[len(launches) :]:
        if timer.label in whole:
            samples += in_context_samples(timer.label, graph, timer.fastest()[1], "context", gpu_kernel_features(graph))
            continue
        wall, kernel = timer.fastest()[0], timer.kernel_ms()
        op = graph.ops[0]
        features = op_features(graph, op)
        sample = {"op_type": op.op_type, "label": timer.label, "features": features, "ms": max(MIN_MS, kernel)}
        samples.append(sample | {"source": "profile"})
        copies.append((_copied_bytes(graph), wall - kernel - first_dispatch))
    link = fit_transfer(copies)
    runs = [
        launch_run(g, len(t.fastest()[1]), t.kernel_ms(), t.fastest()[0], link["gbps"])
        for g, t in timed
        if t.label in launches or t.label in whole
    ]
    dispatch, per_op, scale = fit_launch(runs)
    return GpuProfile(
        device=device_entry(
            str(backends[0].device_name), samples, dispatch, per_op, heap, kernel_scale=scale, launch_runs=runs
        ),
        transfers={"cpu->gpu": link, "gpu->cpu": dict(link)},
        unified=bool(backends[0].unified_memory),
    )


def launch_run(graph: Graph, kernels: int, kernel_ms: float, wall_ms: float, gbps: float) -> list[float]:
    """A fit_launch point of one multi-op run: [kernels, summed kernel ms, wall ms less its copies' bandwidth part]."""
    return [kernels, round(kernel_ms, 5), round(wall_ms - _copied_bytes(graph) / (gbps * 1e6), 5)]


def _copied_bytes(graph: Graph) -> int:
    """What a run of the graph as a GPU partition copies: its inputs in and its outputs out."""
    return sum(graph.tensors[n].nbytes for n in (*graph.inputs, *graph.outputs))
