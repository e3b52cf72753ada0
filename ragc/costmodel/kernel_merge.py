"""Features of a fused kernel as a whole, from the ops it runs (a device's kernel map: op name -> anchor op).

A fused kernel reads what its ops read from outside it and writes what leaves it; its FLOPs are all of its ops'.
Its family is its anchor's, except where the fusion makes another kind of kernel: matrix products around a softmax
are an attention kernel, a reduction with elementwise work and no matrix product a normalization."""

from __future__ import annotations

import math

from ragc.costmodel.features import FAMILIES, family_of_features, op_features
from ragc.ir import Graph, Op


def kernel_family(anchor_family: str, families: list[str]) -> str:
    """The family of a kernel whose ops have `families` (its anchor's first)."""
    heavy = {"gemm", "conv", "conv_dw"} & set(families)
    if "softmax" in families and families.count("gemm") >= 2:
        return "attention"
    if not heavy and "reduce" in families and "elementwise" in families:
        return "norm"
    return anchor_family


def grouped_features(graph: Graph, kernel_of: dict[str, str]) -> dict[str, dict[str, float]]:
    """Anchor op -> features of its kernel (merged_features over the ops `kernel_of` maps to it); ops mapped to
    "" (computed at load time or removed) have no kernel."""
    groups: dict[str, list[Op]] = {}
    for op in graph.ops:
        if anchor := kernel_of.get(op.name, op.name):
            groups.setdefault(anchor, []).append(op)
    ops, consumers = {op.name: op for op in graph.ops}, graph.consumers()
    return {anchor: merged_features(graph, ops[anchor], members, consumers) for anchor, members in groups.items()}


def merged_features(graph: Graph, anchor: Op, members: list[Op], consumers: dict[str, list[Op]]) -> dict[str, float]:
    """The anchor's features (op_features) with what the kernel reads and writes, its FLOPs and transcendentals
    taken over all of its ops (a QuickGelu reads x once, where its Mul read x and sigmoid(x)), and its family."""
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
    family = kernel_family(family_of_features(feats), [family_of_features(f) for f in each])
    feats.update({f"fam_{f}": float(f == family) for f in FAMILIES})
    moved = feats["bytes_in"] + feats["bytes_out"]
    feats["intensity"] = feats["flops"] / moved if moved else 0.0
    return feats
