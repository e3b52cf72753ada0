"""GPU side of `ragc costmodel eval`: each model as one GPU partition (ragc's SPIR-V through runtime_min's Vulkan
backend), timed round robin like the CPU side: the wall time of a run (inputs copied in, outputs copied out) and
every dispatch's GPU timestamps, which give the in-context time of the op it comes from (a fused kernel's time
counts for the op it is named after: the conv/gemm of an epilogue, the last op of an elementwise tree)."""

from __future__ import annotations

from rich.console import Console

from ragc.costmodel.gpu_fusion import gpu_kernel_features
from ragc.ir import Graph
from ragc.profiler.context import in_context_samples
from ragc.profiler.gpu_bench import GpuGraphTimer, gpu_probe, prepare_gpu
from ragc.profiler.model_timing import ModelTiming
from ragc.profiler.progress import bar_advance, progress_bar
from ragc.profiler.steady import Gate, Steadiness, time_interleaved


def measure_gpu_models(
    graphs: dict[str, Graph], budget_s: float, rounds: int, gate: Gate, console: Console | None = None
) -> tuple[list[ModelTiming], list[str], Steadiness | None]:
    """(timings of the models the GPU runs whole, names of those it cannot, what the gate saw); ([], all, None)
    without a usable GPU."""
    from runtime_min.backends.vulkan import VulkanBackend
    from runtime_min.errors import BackendUnavailable
    from runtime_min.options import LoadOptions

    try:
        backend = VulkanBackend(LoadOptions.make({"timestamps": True}))
    except BackendUnavailable:
        return [], list(graphs), None
    try:
        with progress_bar(console) as bar:
            task = bar.add_task("gpu codegen", total=len(graphs), label="")
            prepared, skipped = {}, []
            for name, graph in graphs.items():
                bar.update(task, advance=1, label=name)
                exe = prepare_gpu(backend, graph)
                if exe is None:
                    skipped.append(name)
                else:
                    prepared[name] = GpuGraphTimer(exe, graph, name)
            bar.update(task, description="gpu timing", total=len(prepared) * rounds, completed=0)
            timers = list(prepared.values())
            try:
                with gpu_probe(backend, gate):
                    steadiness = time_interleaved(timers, budget_s, rounds, bar_advance(bar, task), gate)
            finally:
                for timer in timers:
                    timer.exe.close()
        timings = []
        for name, timer in prepared.items():
            wall, per_label = timer.fastest()
            samples = in_context_samples(name, graphs[name], per_label, "eval", gpu_kernel_features(graphs[name]))
            timings.append(ModelTiming(name, graphs[name], samples, wall, timer.spread_pct()))
        return timings, skipped, steadiness
    finally:
        backend.close()
