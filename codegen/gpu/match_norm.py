"""Normalisation and rotary patterns for the GPU.

- RMSNorm: x -> Pow(x, 2) or x * x -> ReduceMean(last axis) -> + eps -> Sqrt -> Reciprocal or 1 / . -> x * . [* g]
  becomes an RMSNormalization op (templates/layernorm.comp.j2).
- Rotary embedding as HF writes it: x * cos + Concat(-x[..., h:], x[..., :h]) * sin (rotate_half) becomes a
  "ragc.RotateHalf" op, one dispatch (templates/rotate_half.comp.j2).
"""

from __future__ import annotations

import numpy as np

from codegen.gpu.lowering import Dispatch, broadcast_index, grid, lowers, numel
from codegen.gpu.match import GraphView
from codegen.gpu.ops.movement import slice_starts
from ragc.ir import Graph, Op, Tensor

ROTATE_HALF = "ragc.RotateHalf"


def match_rms_norm(view: GraphView, last: Op) -> tuple[Op, list[Op]] | None:
    """x * (1 / sqrt(mean(x^2) + eps)) [* gamma], ending at Mul `last`."""
    graph = view.graph
    gamma, top = "", last
    inner = [n for n in last.inputs if view.source(n, "Mul")]
    for cand in inner:
        op = view.source(cand, "Mul")
        if view.private(cand, {last.name}) and any(view.source(n, "Reciprocal", "Div") for n in op.inputs):
            gamma, top = next(n for n in last.inputs if n != cand), op
            break
    recip_name = next((n for n in top.inputs if view.source(n, "Reciprocal", "Div")), None)
    if recip_name is None:
        return None
    x = next(n for n in top.inputs if n != recip_name)
    recip = view.source(recip_name, "Reciprocal", "Div")
    if recip.op_type == "Div" and view.scalar(recip.inputs[0]) != 1.0:
        return None
    sqrt = view.source(recip.inputs[-1], "Sqrt")
    add = sqrt and view.source(sqrt.inputs[0], "Add")
    eps = add and next((view.scalar(n) for n in add.inputs if view.scalar(n) is not None), None)
    mean = add and view.source(next(n for n in add.inputs if view.scalar(n) is None), "ReduceMean")
    square = mean and view.source(mean.inputs[0], "Pow", "Mul")
    if not (square and eps is not None and _squares(view, square, x) and _last_axis_mean(graph, mean)):
        return None
    members = [last] if top is last else [last, top]
    members += [recip, sqrt, add, mean, square]
    chain = [(recip_name, top), (sqrt.outputs[0], recip), (add.outputs[0], sqrt), (mean.outputs[0], add)]
    chain += [(square.outputs[0], mean)] + ([(top.outputs[0], last)] if top is not last else [])
    if any(not view.private(tensor, {reader.name}) for tensor, reader in chain):
        return None
    if gamma and (graph.tensors[gamma].shape != graph.tensors[x].shape[-1:] or graph.tensors[gamma].dtype != "float32"):
        return None
    if not gamma:
        gamma = f"{last.name}/ones"
        size = graph.tensors[x].shape[-1]
        graph.tensors[gamma] = Tensor(gamma, (size,), "float32", np.ones(size, np.float32))
    fused = Op(last.name, "RMSNormalization", [x, gamma], list(last.outputs), {"axis": -1, "epsilon": eps})
    return fused, members


def _squares(view: GraphView, op: Op, x: str) -> bool:
    if op.op_type == "Mul":
        return op.inputs == [x, x]
    return op.inputs[0] == x and view.scalar(op.inputs[1]) == 2.0


def _last_axis_mean(graph: Graph, mean: Op) -> bool:
    rank = len(graph.tensors[mean.inputs[0]].shape)
    axes = mean.attrs.get("axes")
    if len(mean.inputs) > 1 and mean.inputs[1]:
        data = graph.tensors[mean.inputs[1]].data
        axes = None if data is None else data.reshape(-1).tolist()
    return axes is not None and [a % rank for a in axes] == [rank - 1] and mean.attrs.get("keepdims", 1) == 1


def _half_of(view: GraphView, name: str, x: str, upper: bool) -> bool:
    """`name` is Slice(x) along the last axis taking its upper (lower) half, everything else whole."""
    op = view.source(name, "Slice")
    if op is None or op.inputs[0] != x or any(n and view.graph.tensors[n].data is None for n in op.inputs[1:]):
        return False
    shape, out = view.graph.tensors[x].shape, view.graph.tensors[name].shape
    first, step = slice_starts(view.graph, op)
    half = shape[-1] // 2
    whole = all(f == 0 and s == 1 for f, s in zip(first[:-1], step[:-1], strict=True)) and out[:-1] == shape[:-1]
    return whole and shape[-1] % 2 == 0 and step[-1] == 1 and out[-1] == half and first[-1] == (half if upper else 0)


def _rotated(view: GraphView, name: str) -> tuple[str, list[Op]] | None:
    """x and the ops of Concat(Neg(upper half of x), lower half of x) along the last axis, written to `name`."""
    cat = view.source(name, "Concat")
    if (
        cat is None
        or len(cat.inputs) != 2
        or cat.attrs.get("axis", 0) % len(view.graph.tensors[name].shape) != len(view.graph.tensors[name].shape) - 1
    ):
        return None
    neg = view.source(cat.inputs[0], "Neg")
    if neg is None:
        return None
    x = view.producers[neg.inputs[0]].inputs[0] if neg.inputs[0] in view.producers else ""
    if not (x and _half_of(view, neg.inputs[0], x, True) and _half_of(view, cat.inputs[1], x, False)):
        return None
    inner = [(cat.inputs[0], cat), (cat.inputs[1], cat), (neg.inputs[0], neg)]
    if not all(view.private(t, {reader.name}) for t, reader in inner):
        return None
    return x, [cat, neg, view.producers[neg.inputs[0]], view.producers[cat.inputs[1]]]


def match_rotate_half(view: GraphView, add: Op) -> tuple[Op, list[Op]] | None:
    """x * cos + rotate_half(x) * sin, ending at Add `add` (operands of Add and of each Mul in either order)."""
    graph = view.graph
    muls = [view.source(n, "Mul") for n in add.inputs]
    if None in muls or not all(view.private(n, {add.name}) for n in add.inputs):
        return None
    for plain, turned in (muls, muls[::-1]):
        for rot, sin in (turned.inputs, turned.inputs[::-1]):
            found = _rotated(view, rot)
            if found is None or not view.private(rot, {turned.name}) or found[0] not in plain.inputs:
                continue
            x = found[0]
            cos = next((n for n in plain.inputs if n != x), x)
            shape = graph.tensors[x].shape
            if (
                any(graph.tensors[t].dtype != "float32" for t in (x, cos, sin))
                or graph.tensors[add.outputs[0]].shape != shape
            ):
                return None
            fused = Op(add.name, ROTATE_HALF, [x, cos, sin], list(add.outputs), {})
            return fused, [add, plain, turned, *found[1]]
    return None


@lowers(ROTATE_HALF)
def lower_rotate_half(graph: Graph, op: Op) -> list[Dispatch]:
    x, cos, sin = (graph.tensors[n] for n in op.inputs)
    params = {
        "count": numel(x.shape),
        "D": x.shape[-1],
        "cos_index": broadcast_index(cos.shape, x.shape, "i"),
        "sin_index": broadcast_index(sin.shape, x.shape, "i"),
    }
    return [Dispatch("rotate_half.comp.j2", params, (op.outputs[0], *op.inputs), grid(params["count"]))]
