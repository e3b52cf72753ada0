"""GPU side of `ragc costmodel eval`: each model as one GPU partition (ragc's SPIR-V through runtime_min's Vulkan
backend), timed round robin like the CPU side: the wall time of a run (inputs copied in, outputs copied out; runs
without timestamps, see gpu_bench.GpuGraphTimer) and every dispatch's GPU timestamps, which give the in-context time
of the op it comes from (a fused kernel's time counts for its anchor: costmodel.gpu_fusion)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from ragc.costmodel.gpu_fusion import gpu_kernel_features
from ragc.ir import Graph
from ragc.profiler.context import in_context_samples
from ragc.profiler.gpu_bench import gpu_probe, timed_graph, timing_backends
from ragc.profiler.model_timing import ModelTiming
from ragc.profiler.progress import bar_advance, progress_bar
from ragc.profiler.steady import Gate, Steadiness, time_interleaved


def measure_gpu_models(
    graphs: dict[str, Graph], budget_s: float, rounds: int, gate: Gate, console: Console | None = None
) -> tuple[list[ModelTiming], list[str], Steadiness | None]:
    """(timings of the models the GPU runs whole, names of those it cannot, what the gate saw); ([], all, None)
    without a usable GPU."""
    from runtime_min.errors import BackendUnavailable

    try:
        with timing_backends() as backends:
            return _measure(backends, graphs, budget_s, rounds, gate, console)
    except BackendUnavailable:
        return [], list(graphs), None


def _measure(
    backends: tuple[Any, Any],
    graphs: dict[str, Graph],
    budget_s: float,
    rounds: int,
    gate: Gate,
    console: Console | None,
) -> tuple[list[ModelTiming], list[str], Steadiness | None]:
    with progress_bar(console) as bar:
        task = bar.add_task("gpu codegen", total=len(graphs), label="")
        prepared, skipped = {}, []
        for name, graph in graphs.items():
            bar.update(task, advance=1, label=name)
            timer = timed_graph(backends, graph, name)
            if timer is None:
                skipped.append(name)
            else:
                prepared[name] = timer
        bar.update(task, description="gpu timing", total=len(prepared) * rounds, completed=0)
        timers = list(prepared.values())
        try:
            with gpu_probe(backends[0], gate):
                steadiness = time_interleaved(timers, budget_s, rounds, bar_advance(bar, task), gate)
        finally:
            for timer in timers:
                timer.close()
    timings = []
    for name, timer in prepared.items():
        wall, per_label = timer.fastest()
        samples = in_context_samples(name, graphs[name], per_label, "eval", gpu_kernel_features(graphs[name]))
        timings.append(ModelTiming(name, graphs[name], samples, wall, timer.spread_pct()))
    return timings, skipped, steadiness
