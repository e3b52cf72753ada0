"""Attention patterns for the GPU: the sequence the exporters write, and the opset-23 Attention op, as one
"ragc.FusedAttention" op (templates/attention.comp.j2) with the Transposes and grouped-query K/V repeats around
it absorbed into the operands' strides.

MatMul(q [* s], k^T [* s]) [* or / scale] [+ mask] -> Softmax -> [Where(IsNaN(p), 0, p)] -> MatMul(v)
"""

from __future__ import annotations

import math
from dataclasses import replace

from codegen.gpu.lowering import Dispatch, lowers, strides
from codegen.gpu.match import GraphView
from codegen.gpu.ops.attention import AttentionSpec, Operand, attention_dispatch, onnx_attention_spec, spec_reason
from ragc.ir import Graph, Op

FUSED_ATTENTION = "ragc.FusedAttention"


def _peel_scale(view: GraphView, tensor: str, members: list[Op]) -> tuple[str, float]:
    """Follow Mul / Div by scalar constants back from `tensor` while each result is read only by the next op."""
    scale = 1.0
    while True:
        op = view.source(tensor, "Mul", "Div")
        reader = members[-1].name if members else None
        if op is None or not view.private(tensor, {reader} if reader else set()):
            return tensor, scale
        a, b = op.inputs
        if view.scalar(b) is not None:
            tensor, factor = a, view.scalar(b)
        elif op.op_type == "Mul" and view.scalar(a) is not None:
            tensor, factor = b, view.scalar(a)
        else:
            return tensor, scale
        if factor == 0.0:
            return tensor, scale
        scale = scale / factor if op.op_type == "Div" else scale * factor
        members.append(op)


def _operand(graph: Graph, name: str, axis_of: list[int], k_side: bool = False) -> Operand | None:
    """Tensor `name` as an attention operand: logical axis i (batch, head, row, element; K: batch, head, element,
    row) is its axis `axis_of[i]`; a 3-D (N, S, D) tensor is batch 1 with N heads."""
    shape = graph.tensors[name].shape
    if len(shape) == 3:
        shape, axis_of = (1, *shape), [0, 1, 2, 3]
    elif len(shape) != 4:
        return None
    st = strides(shape)
    row, elem = (3, 2) if k_side else (2, 3)
    at = [st[axis_of[i]] for i in range(4)]
    size = [shape[axis_of[i]] for i in range(4)]
    if not k_side and at[elem] != 1:
        return None
    return Operand(name, at[0], at[1], at[row], size[1], size[row], size[elem], step=at[elem])


def _absorb(view: GraphView, name: str, readers: set[str]) -> tuple[str, list[int], list[Op]]:
    """A 4-D Transpose writing `name`, read only by the ops named, is absorbed: its input, perm and ops. So is
    the 3-D detour the dynamo exporter writes for swapping the last two axes: Reshape to (B * H, S, D),
    Transpose [0, 2, 1], Reshape back."""
    tensors = view.graph.tensors
    if len(tensors[name].shape) != 4 or not view.private(name, readers):
        return name, [0, 1, 2, 3], []
    t = view.source(name, "Transpose")
    if t is not None:
        return t.inputs[0], list(t.attrs.get("perm", [3, 2, 1, 0])), [t]
    back = view.source(name, "Reshape")
    t = back and view.source(back.inputs[0], "Transpose")
    there = t and view.source(t.inputs[0], "Reshape")
    if not (there and t.attrs.get("perm") == [0, 2, 1] and len(tensors[there.inputs[0]].shape) == 4):
        return name, [0, 1, 2, 3], []
    b, h, s, d = tensors[there.inputs[0]].shape
    private = view.private(back.inputs[0], {back.name}) and view.private(t.inputs[0], {t.name})
    if not private or tensors[t.inputs[0]].shape != (b * h, s, d) or tensors[name].shape != (b, h, d, s):
        return name, [0, 1, 2, 3], []
    return there.inputs[0], [0, 1, 3, 2], [back, t, there]


def _only_reader(view: GraphView, name: str) -> Op | None:
    readers = view.consumers.get(name, [])
    return readers[0] if name not in view.graph.outputs and len(readers) == 1 else None


def _absorb_output(view: GraphView, name: str) -> tuple[str, list[int], list[Op]]:
    """The attention output's only reader, a 4-D Transpose (maybe after a Reshape that keeps the shape), is
    absorbed: the kernel writes its output. Returns the tensor written, the axis map and the ops absorbed."""
    tensors, ops, at = view.graph.tensors, [], name
    same = _only_reader(view, at)
    if same is not None and same.op_type == "Reshape" and tensors[same.outputs[0]].shape == tensors[at].shape:
        ops, at = [same], same.outputs[0]
    t = _only_reader(view, at)
    perm = list(t.attrs.get("perm", [3, 2, 1, 0])) if t is not None and t.op_type == "Transpose" else []
    if len(perm) != 4:
        return name, [0, 1, 2, 3], []
    return t.outputs[0], [perm.index(i) for i in range(4)], [*ops, t]


def _ungroup(view: GraphView, name: str, readers: set[str]) -> tuple[str, list[Op]]:
    """K or V repeated over query heads as exporters write it (Unsqueeze at 2, Expand, Reshape to B x H x S x D)
    is read ungrouped: the kernel maps query head h to KV head h / group itself."""
    tensors = view.graph.tensors
    r = view.source(name, "Reshape")
    e = r and view.source(r.inputs[0], "Expand")
    u = e and view.source(e.inputs[0], "Unsqueeze")
    if not (u and view.private(name, readers) and view.private(r.inputs[0], {r.name})):
        return name, []
    src, rep = u.inputs[0], tensors[e.outputs[0]].shape
    b, h, s, d = tensors[src].shape if len(tensors[src].shape) == 4 else (0, 0, 0, 0)
    shapes = (tensors[u.outputs[0]].shape, rep, tensors[name].shape)
    if not view.private(e.inputs[0], {e.name}) or shapes != (
        (b, h, 1, s, d),
        (b, h, rep[2], s, d),
        (b, h * rep[2], s, d),
    ):
        return name, []
    return src, [r, e, u]


def _operands(
    view: GraphView, members: set[str], names: tuple[str, str, str, str], k_rows: bool = False, ungroup: bool = True
):
    """Q, K, V and Y operands, each through an absorbed Transpose (K and V also through an absorbed head repeat,
    when both have one) where one fits, and the absorbed ops; `k_rows`: names[1] holds K as (B, H, S, D)."""
    graph, operands, absorbed = view.graph, [], []
    for role, name in enumerate(names[:3]):
        base = [0, 1, 3, 2] if role == 1 and k_rows else [0, 1, 2, 3]
        src, perm, found = _absorb(view, name, members)
        readers = {found[-1].name} if found else members
        src, grouped = _ungroup(view, src, readers) if role and ungroup else (src, [])
        op = _operand(graph, src, [perm[a] for a in base], role == 1) if found or grouped else None
        if op is None:
            op, found, grouped = _operand(graph, name, base, role == 1), [], []
        operands.append(op)
        absorbed += found + grouped
    if ungroup and None not in operands[1:] and operands[1].heads != operands[2].heads:
        return _operands(view, members, names, k_rows, ungroup=False)  # only one of K and V repeats as expected
    src, axis_of, ops = _absorb_output(view, names[3])
    out = _operand(graph, src, axis_of) if ops else None
    if out is None:
        out, ops = _operand(graph, names[3], [0, 1, 2, 3]), []
    operands.append(out)
    return operands, absorbed + ops


def match_onnx_attention(view: GraphView, op: Op) -> tuple[Op, list[Op]] | None:
    """An opset-23 Attention on 4-D operands, with the Transposes and head repeats around it absorbed."""
    graph = view.graph
    if any(len(graph.tensors[n].shape) != 4 for n in op.inputs[:3]):
        return None
    names = (*op.inputs[:3], op.outputs[0])
    operands, absorbed = _operands(view, {op.name}, names, k_rows=True)
    if not absorbed or None in operands:
        return None
    spec = replace(onnx_attention_spec(graph, op), q=operands[0], k=operands[1], v=operands[2], out=operands[3])
    inputs = [n for n in (spec.q.name, spec.k.name, spec.v.name, spec.mask) if n]
    return Op(op.name, FUSED_ATTENTION, inputs, [spec.out.name], {"spec": spec}), [op, *absorbed]


def match_attention(view: GraphView, second: Op) -> tuple[Op, list[Op]] | None:
    """The fused op replacing the pattern that ends in MatMul `second`, and the ops it replaces."""
    graph = view.graph
    members = [second]
    probs, v = second.inputs
    masked_rows = "keep"
    where = view.source(probs, "Where")
    if where is not None and view.private(probs, {second.name}):
        nan = view.source(where.inputs[0], "IsNaN")
        if nan is None or view.scalar(where.inputs[1]) != 0.0 or nan.inputs[0] != where.inputs[2]:
            return None
        probs, masked_rows = where.inputs[2], "guard"
        members += [where, nan]
    softmax = view.source(probs, "Softmax")
    readers = {o.name for o in members}
    if softmax is None or not view.private(probs, readers):
        return None
    rank = len(graph.tensors[probs].shape)
    if softmax.attrs.get("axis", -1) % rank != rank - 1:
        return None
    members.append(softmax)
    scores, mask = softmax.inputs[0], ""
    add = view.source(scores, "Add")
    if add is not None and view.private(scores, {softmax.name}):
        side = next((n for n in add.inputs if _leads_to_matmul(view, n, add)), None)
        if side is not None:
            scores, mask = side, next((n for n in add.inputs if n != side), "")
            members.append(add)
    scores, scale = _peel_scale(view, scores, members)
    first = view.source(scores, "MatMul")
    if first is None or not view.private(scores, {members[-1].name}):
        return None
    members.append(first)
    q_side, k_side = [first], [first]
    q, q_scale = _peel_scale(view, first.inputs[0], q_side)
    kt, k_scale = _peel_scale(view, first.inputs[1], k_side)
    members += q_side[1:] + k_side[1:]
    operands, absorbed = _operands(view, {m.name for m in members}, (q, kt, v, second.outputs[0]))
    spec = _spec(graph, operands, mask, scale * q_scale * k_scale, masked_rows)
    if spec is None or spec_reason(spec) is not None:
        return None
    inputs = [n for n in (spec.q.name, spec.k.name, spec.v.name, mask) if n]
    fused = Op(second.name, FUSED_ATTENTION, inputs, [spec.out.name], {"spec": spec})
    return fused, members + absorbed


def _leads_to_matmul(view: GraphView, tensor: str, reader: Op) -> bool:
    """Whether `tensor` is a MatMul output, maybe scaled by constants, read only by `reader`."""
    start, _ = _peel_scale(view, tensor, [reader])
    return view.source(start, "MatMul") is not None and view.private(tensor, {reader.name})


def _spec(graph: Graph, operands: list, mask: str, scale: float, masked_rows: str) -> AttentionSpec | None:
    q, k, v, out = operands
    if None in operands or q.size != k.size or k.rows != v.rows or (q.heads, q.rows) != (out.heads, out.rows):
        return None
    batch = graph.tensors[q.name].shape[0] if len(graph.tensors[q.name].shape) == 4 else 1
    if mask:
        m = graph.tensors[mask]
        if m.dtype != "float32" or len(m.shape) > 4 or m.shape[-1] != k.rows:
            return None
        full = (batch, q.heads, q.rows, k.rows)
        padded = (1,) * (4 - len(m.shape)) + tuple(m.shape)
        if any(p not in (1, f) for p, f in zip(padded, full, strict=True)):
            return None
    if math.isinf(scale) or math.isnan(scale):
        return None
    return AttentionSpec(batch, q, k, v, out, scale, mask=mask, masked_rows=masked_rows)


@lowers(FUSED_ATTENTION)
def lower_fused_attention(graph: Graph, op: Op) -> list[Dispatch]:
    return [attention_dispatch(graph, op.attrs["spec"])]
