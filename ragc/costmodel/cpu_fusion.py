"""Which CPU kernel runs each op: onnxruntime's fusions (codegen.cpu_kernels) plus the conv/gemm epilogues its
layout optimizer folds into blocked-layout convs (features.epilogue_sources), which the extended level does not
show. A fused kernel's time belongs to one of its ops, the anchor: the op onnxruntime names it after, else its conv
or gemm, else the op writing its output."""

from __future__ import annotations

import math

from codegen.cpu_kernels import cpu_kernels, named_op
from ragc.costmodel.features import epilogue_sources, op_family, op_features
from ragc.ir import Graph, Op

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
    """Anchor op -> features of its CPU kernel: the anchor's own (op_features), with what the kernel reads and
    writes, its FLOPs and transcendentals taken over all of its ops (a QuickGelu reads x once, where its Mul read x
    and sigmoid(x)). Ops that are no anchor have no entry."""
    kernel_of = cpu_kernel_of(graph) if kernel_of is None else kernel_of
    groups: dict[str, list[Op]] = {}
    for op in graph.ops:
        if kernel_of[op.name]:
            groups.setdefault(kernel_of[op.name], []).append(op)
    ops = {op.name: op for op in graph.ops}
    consumers = graph.consumers()
    return {anchor: _merged(graph, ops[anchor], members, consumers) for anchor, members in groups.items()}


def _merged(graph: Graph, anchor: Op, members: list[Op], consumers: dict[str, list[Op]]) -> dict[str, float]:
    feats = op_features(graph, anchor)
    if len(members) == 1:
        return feats
    inside = {op.name for op in members}
    made = {n for op in members for n in op.outputs}
    ins = [graph.tensors[n] for n in dict.fromkeys(n for op in members for n in op.inputs if n and n not in made)]
    outs = [
        graph.tensors[n] for n in made if n in graph.outputs or any(c.name not in inside for c in consumers.get(n, []))
    ]
    each = [op_features(graph, op) for op in members]
    feats.update(
        bytes_in=float(sum(t.nbytes for t in ins)),
        bytes_out=float(sum(t.nbytes for t in outs)),
        weight_bytes=float(sum(t.nbytes for t in ins if t.is_constant)),
        in_elems=float(sum(math.prod(t.shape) for t in ins)),
        out_elems=float(sum(math.prod(t.shape) for t in outs)),
        n_inputs=float(len(ins)),
        flops=sum(f["flops"] for f in each),
        transcendental=max(f["transcendental"] for f in each),
    )
    moved = feats["bytes_in"] + feats["bytes_out"]
    feats["intensity"] = feats["flops"] / moved if moved else 0.0
    return feats
