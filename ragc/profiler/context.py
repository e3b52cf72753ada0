"""In-context op samples: what each op of a whole model costs inside it.

Micro-benchmarks time each op alone; inside a model an op finds its inputs in cache, shares a blocked layout with
its neighbours, or pays for a reorder, and its kernels run back to back. So `ragc profile` also times whole models
that profiler.modelgen and profiler.archgen build at random (seeds no evaluation model uses), and the cost model
learns from both kinds of sample (learned.IN_CONTEXT). On the CPU, onnxruntime's per-node profiler gives each op's
share of a run, scaled to the run's measured wall time (to_wall); on the GPU, each dispatch's timestamps are the
op's time.
"""

from __future__ import annotations

from typing import Any

from ragc.costmodel.cpu_fusion import cpu_kernel_features, cpu_kernel_of
from ragc.costmodel.features import family_of_features, op_features
from ragc.ir import Graph
from ragc.profiler.archgen import random_convnext, random_decoder, random_resnet
from ragc.profiler.modelgen import random_cnn, random_transformer, to_graphs
from ragc.profiler.oneop import attribute_nodes
from ragc.profiler.timers import GraphTimer

MIN_MS = 1e-4
FAMILIES = {  # builder, seeds, how many of them a quick profile takes
    "cnn": (random_cnn, (1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008), 3),
    "transformer": (random_transformer, (2001, 2002, 2003, 2004), 1),
    "resnet": (random_resnet, (3001, 3002, 3003), 1),
    "convnext": (random_convnext, (4002, 4001), 1),
    "decoder": (random_decoder, (5003, 5001, 5002, 5004), 1),
}


def context_graphs(quick: bool) -> list[tuple[str, Graph]]:
    """(label, graph) of the models `ragc profile` times whole: every family's first seeds when quick (FAMILIES),
    all of them otherwise."""
    models = {
        f"random_{family}_{seed}": build(seed)
        for family, (build, seeds, first) in FAMILIES.items()
        for seed in seeds[: first if quick else None]
    }
    return list(to_graphs(models).items())


def to_wall(times: dict[str, float], wall_ms: float, dispatch_ms: float, op_overhead_ms: float) -> dict[str, float]:
    """Per-op CPU times scaled so that one launch, the per-op overheads and the ops add up to the measured wall
    time: onnxruntime's per-node profiler overstates nodes that many threads run (by 5-12% on a 16-core Xeon),
    but its proportions hold. The same rule shares recorded runs among their ops (personality.record)."""
    spare = wall_ms - dispatch_ms - len(times) * op_overhead_ms  # what the kernels took in the run
    total = sum(times.values())
    if total <= 0 or spare <= 0:
        return times
    return {op: ms * spare / total for op, ms in times.items()}


def in_context_samples(
    model: str, graph: Graph, times: dict[str, float], source: str, kernels: dict[str, dict[str, float]]
) -> list[dict[str, Any]]:
    """Op samples of the graph's timed, non-metadata ops from op name -> in-context ms; a sample's features are
    those of the kernel its op names in `kernels` (costmodel.kernel_features: a fused kernel as a whole), as the
    cost model asks for them, else the op's own."""
    samples = []
    for op in graph.ops:
        features = kernels.get(op.name) or op_features(graph, op)
        if op.name in times and family_of_features(features) != "metadata":
            samples.append(
                {
                    "op": op.name,
                    "op_type": op.op_type,
                    "features": features,
                    "ms": max(MIN_MS, times[op.name]),
                    "source": source,
                    "model": model,
                }
            )
    return samples


def cpu_samples(
    name: str,
    graph: Graph,
    timer: GraphTimer,
    bias_ms: float,
    dispatch_ms: float,
    op_overhead_ms: float,
    source: str,
) -> list[dict[str, Any]]:
    """In-context samples of a graph timed whole on the CPU (a profiled GraphTimer, done timing), scaled so that
    they and the overheads add up to the run's wall time (see to_wall)."""
    kernel_of = cpu_kernel_of(graph)  # one onnxruntime optimization for both the attribution and the features
    times = attribute_nodes(graph, timer.node_ms(), bias_ms, True, kernel_of)
    samples = in_context_samples(name, graph, times, source, cpu_kernel_features(graph, kernel_of))
    shares = to_wall({s["op"]: s["ms"] for s in samples}, timer.wall_ms(), dispatch_ms, op_overhead_ms)
    return [s | {"ms": shares[s["op"]]} for s in samples]
