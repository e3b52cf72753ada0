"""Which GPU kernel runs each op: ragc's own codegen fusions (codegen.gpu.patterns: attention, RMSNorm, rotary;
codegen.gpu.fuse: elementwise trees and conv/gemm epilogues). A fused kernel keeps one member's name, its anchor,
and its dispatch's time is that op's sample."""

from __future__ import annotations

from ragc.costmodel.kernel_merge import grouped_features
from ragc.ir import Graph


def gpu_kernel_of(graph: Graph) -> dict[str, str]:
    """Op name -> the anchor of the GPU kernel that runs it (itself when unfused): a fused op's members are the ops
    between its inputs and its outputs."""
    from codegen.gpu.fuse import fuse
    from codegen.gpu.patterns import fuse_patterns

    producers = graph.producers()
    kernels = fuse(fuse_patterns(graph)).ops
    kernel_of = {op.name: op.name for op in graph.ops}
    dropped = set(kernel_of) - {k.name for k in kernels}  # each inside exactly one fused kernel
    for kernel in kernels:
        todo, seen = [n for n in kernel.outputs if n], set()
        while todo:
            op = producers.get(todo.pop())
            if op is None or op.name in seen or not (op.name in dropped or op.name == kernel.name):
                continue
            seen.add(op.name)
            dropped.discard(op.name)
            kernel_of[op.name] = kernel.name
            todo += [n for n in op.inputs if n and n not in kernel.inputs]
    return kernel_of | dict.fromkeys(dropped, "")  # none left unless a fused op's inputs are not its members' own


def gpu_kernel_features(graph: Graph) -> dict[str, dict[str, float]]:
    """Anchor op -> features of its GPU kernel as a whole (kernel_merge.grouped_features)."""
    return grouped_features(graph, gpu_kernel_of(graph))
