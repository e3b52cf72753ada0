"""Which CPU kernel runs each op: onnxruntime's fusions (codegen.cpu_kernels) plus the conv/gemm epilogues its
layout optimizer folds into blocked-layout convs (features.epilogue_sources), which the extended level does not
show. A fused kernel's time belongs to one of its ops, the anchor: the op onnxruntime names it after, else its conv
or gemm, else the op writing its output."""

from __future__ import annotations

from codegen.cpu_kernels import cpu_kernels, named_op
from ragc.costmodel.features import epilogue_sources, op_family
from ragc.costmodel.kernel_merge import grouped_features
from ragc.ir import Graph

FOLDED = ""  # the kernel of an op that onnxruntime computes at load time or removes
HEAVY = ("conv", "gemm")


def cpu_kernel_of(graph: Graph) -> dict[str, str]:
    """Op name -> the anchor of the CPU kernel that runs it (itself when unfused; FOLDED when optimized away).
    Where onnxruntime refuses the graph (an op it lacks), only the epilogues are known."""
    ops, producers = {op.name: op for op in graph.ops}, graph.producers()
    try:
        kernels = cpu_kernels(graph)
    except Exception:  # onnxruntime raises its own exception types for graphs it cannot load
        kernels = [(op.name, [op.name]) for op in graph.ops]
    kernel_of = dict.fromkeys(ops, FOLDED)
    for node, members in kernels:
        named = named_op(ops, producers, node)
        heavy = [m for m in members if op_family(ops[m].op_type) in HEAVY]
        anchor = named.name if named is not None and named.name in members else (heavy or members)[0]
        kernel_of |= dict.fromkeys(members, anchor)
    for op, source in epilogue_sources(graph).items():  # graph order: a chain's source has its kernel already
        if kernel_of[op] == op:
            kernel_of[op] = kernel_of[source] or source
    return kernel_of


def cpu_kernel_features(graph: Graph, kernel_of: dict[str, str] | None = None) -> dict[str, dict[str, float]]:
    """Anchor op -> features of its CPU kernel as a whole (kernel_merge.grouped_features); ops that are no anchor
    have no entry."""
    return grouped_features(graph, cpu_kernel_of(graph) if kernel_of is None else kernel_of)
