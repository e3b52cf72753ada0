"""GPU fusion: a tree of elementwise ops becomes one op; a tree fed by a Conv/Gemm/MatMul becomes its epilogue."""

from __future__ import annotations

from dataclasses import replace

from codegen.gpu.lowering import ALIAS_OPS
from codegen.gpu.ops.eltwise import EPILOGUE_ANCHORS, EXPRESSIONS, Chain, eltwise_reason
from ragc.ir import Graph, Op


def _only_read_by(graph: Graph, tensor: str, readers: set[str], consumers: dict[str, list[Op]]) -> bool:
    """True when every reader of `tensor` is one of the op names in `readers` and it is not a graph output."""
    return tensor not in graph.outputs and all(op.name in readers for op in consumers.get(tensor, []))


def _trees(graph: Graph, consumers: dict[str, list[Op]]) -> dict[str, list[Op]]:
    """Root op name -> its tree of elementwise ops (graph order): an earlier tree joins a later op's once every
    reader of its root's output is in the later tree (so a value read twice, as GELU reads x, stays inside)."""
    producers = graph.producers()
    members: dict[str, list[Op]] = {}
    absorbed: set[str] = set()
    for op in graph.ops:
        if op.op_type not in EXPRESSIONS or eltwise_reason(graph, op) is not None:
            continue
        tree, names, grown = [op], {op.name}, True
        while grown:
            grown = False
            for name in dict.fromkeys(n for member in tree for n in member.inputs if n):
                src = producers.get(name)
                if src is None or src.name not in members or src.name in absorbed or src.name in names:
                    continue
                if _only_read_by(graph, name, names, consumers):
                    tree = members[src.name] + tree
                    names.update(o.name for o in members[src.name])
                    absorbed.add(src.name)
                    grown = True
        members[op.name] = tree
    order = {op.name: i for i, op in enumerate(graph.ops)}
    return {name: sorted(tree, key=lambda o: order[o.name]) for name, tree in members.items() if name not in absorbed}


def _chain(tree: list[Op]) -> Chain:
    inside = {o for op in tree for o in op.outputs if o}
    leaves = tuple(dict.fromkeys(n for op in tree for n in op.inputs if n and n not in inside))
    return Chain(ops=tuple(tree), leaves=leaves, output=tree[-1].outputs[0])


def _anchor_leaf(
    graph: Graph, chain: Chain, consumers: dict[str, list[Op]], producers: dict[str, Op]
) -> tuple[str, list[Op]] | None:
    """The leaf of `chain` that a Conv/Gemm/MatMul writes and only the chain reads, same shape as the chain, and
    the ops between: none, or for a Gemm/MatMul, reshapes (the exporters' Gemm to (B, S, N) before a residual
    Add), each input read by nothing else."""
    readers = {op.name for op in chain.ops}
    out = graph.tensors[chain.output]
    if out.dtype != "float32":
        return None
    for leaf in chain.leaves:
        src, between = producers.get(leaf), []
        while src and src.op_type in ALIAS_OPS and _only_read_by(graph, src.inputs[0], {src.name}, consumers):
            between.append(src)
            src = producers.get(src.inputs[0])
        if between and (src is None or src.op_type not in ("Gemm", "MatMul")):
            continue
        if (
            src is not None
            and src.op_type in EPILOGUE_ANCHORS
            and "ragc_epilogue" not in src.attrs
            and graph.tensors[leaf].shape == out.shape
            and _only_read_by(graph, leaf, readers, consumers)
        ):
            return leaf, between
    return None


def fuse(graph: Graph) -> Graph:
    """A new graph (same tensors) with elementwise trees and epilogues fused; `graph` is left unchanged."""
    consumers, producers = graph.consumers(), graph.producers()
    trees = _trees(graph, consumers)
    replaced: dict[str, Op] = {}  # name of the op whose position the fused op takes -> fused op
    dropped: set[str] = set()
    for root, tree in trees.items():
        chain = _chain(tree)
        found = _anchor_leaf(graph, chain, consumers, producers)
        dropped.update(op.name for op in tree)
        if found is not None:
            leaf, between = found
            anchor = producers[between[-1].inputs[0]] if between else producers[leaf]
            dropped.update(op.name for op in between)
            extra = [n for n in chain.leaves if n != leaf]
            attrs = {**anchor.attrs, "ragc_epilogue": chain, "ragc_epilogue_input": leaf}
            replaced[root] = replace(anchor, inputs=anchor.inputs + extra, outputs=[chain.output], attrs=attrs)
            dropped.add(anchor.name)
        elif len(tree) > 1:
            root_op = tree[-1]
            replaced[root] = replace(root_op, inputs=list(chain.leaves), attrs={**root_op.attrs, "ragc_chain": chain})
        else:
            dropped.discard(root)
    ops = [replaced.get(op.name, op) for op in graph.ops if op.name in replaced or op.name not in dropped]
    return Graph(
        ops=ops, tensors=dict(graph.tensors), inputs=list(graph.inputs), outputs=list(graph.outputs), opset=graph.opset
    )
