"""GPU side of `ragc costmodel eval`: each model as one GPU partition (ragc's SPIR-V through runtime_min's Vulkan
backend), timed round robin like the CPU side: the wall time of a run (inputs copied in, outputs copied out) and
every dispatch's GPU timestamps, which give the in-context time of the op it comes from (a fused kernel's time
counts for the op it is named after: the conv/gemm of an epilogue, the last op of an elementwise tree)."""

from __future__ import annotations

import statistics
import time
from typing import Any

from rich.console import Console

from ragc.costmodel.evaluate import ModelTiming, in_context_samples
from ragc.ir import Graph
from ragc.personality.gpu_bench import GpuTimer
from ragc.personality.oneop import random_feeds, time_interleaved
from ragc.personality.profile import progress_bar

MAX_REPEATS = 200


class GpuModelTimer:
    """One prepared GPU partition timed in blocks; the result is its fastest block (see oneop.GraphTimer)."""

    def __init__(self, exe: Any, graph: Graph):
        self.exe, self.feeds = exe, random_feeds(graph)
        self.blocks: list[tuple[float, dict[str, float]]] = []  # (median wall ms, label -> median kernel ms)

    def block(self, budget_s: float) -> None:
        start = time.perf_counter()
        self.exe.run(self.feeds)  # warm-up
        repeats = max(3, min(MAX_REPEATS, int(budget_s / max(time.perf_counter() - start, 1e-6))))
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
        return min(self.blocks, key=lambda b: b[0])


def measure_gpu_models(
    graphs: dict[str, Graph], budget_s: float, rounds: int, console: Console | None = None
) -> tuple[list[ModelTiming], list[str]]:
    """(timings of the models the GPU runs whole, names of those it cannot); ([], all) without a usable GPU."""
    from runtime_min.backends.vulkan import VulkanBackend
    from runtime_min.errors import BackendUnavailable

    try:
        backend = VulkanBackend({"timestamps": True})
    except BackendUnavailable:
        return [], list(graphs)
    try:
        with progress_bar(console) as bar:
            task = bar.add_task("gpu codegen", total=len(graphs), label="")
            prepared, skipped = {}, []
            for name, graph in graphs.items():
                bar.update(task, advance=1, label=name)
                exe = GpuTimer(backend).prepare(graph)
                if exe is None:
                    skipped.append(name)
                else:
                    prepared[name] = GpuModelTimer(exe, graph)
            names = iter([name for _ in range(rounds) for name in prepared])
            bar.update(task, description="gpu timing", total=len(prepared) * rounds, completed=0)
            timers = list(prepared.values())
            time_interleaved(timers, budget_s, rounds, lambda: bar.update(task, advance=1, label=next(names)))
        timings = []
        for name, timer in prepared.items():
            wall, per_label = timer.fastest()
            timer.exe.close()
            timings.append(ModelTiming(name, graphs[name], in_context_samples(name, graphs[name], per_label), wall))
        return timings, skipped
    finally:
        backend.close()
