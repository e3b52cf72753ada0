"""Attention patterns for the GPU: the sequence the exporters write, and the opset-23 Attention op, as one
"ragc.FusedAttention" op (templates/attention.comp.j2) with the movement ops before it (codegen/gpu/views.py),
the grouped-query K/V repeats and a Transpose after it absorbed into the operands' strides.

MatMul(q [* s], k^T [* s]) [* or / scale] [+ mask] -> Softmax -> [Where(IsNaN(p), 0, p)] -> MatMul(v)
"""

from __future__ import annotations

import math
from dataclasses import replace

from codegen.gpu.lowering import Dispatch, broadcast_strides, lowers
from codegen.gpu.match import GraphView
from codegen.gpu.match_norm import ROTATE_HALF
from codegen.gpu.ops.attention import (
    AttentionSpec,
    Operand,
    Rotary,
    attention_dispatch,
    onnx_attention_spec,
    spec_reason,
)
from codegen.gpu.views import Affine, Regroup, View, droppable, identity, reshaped, trace, with_unit_axis
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


def _operand(graph: Graph, view: View, k_side: bool, rotation: tuple | None = None) -> Operand | None:
    """A 4-D view (batch, head, row, element; K: batch, head, element, row) as an attention operand, with the
    rotation its trace absorbed (cos, sin and their strides over the view's axes)."""
    if len(view.sizes) != 4:
        return None
    offset, st = view.strides(graph.tensors[view.base].shape)
    order = (0, 1, 3, 2) if k_side else (0, 1, 2, 3)  # the view's axes as (batch, head, row, element)
    at, sizes = [st[a] for a in order], [view.sizes[a] for a in order]
    rotary = None
    if rotation is not None:
        cos, sin, cos_st, sin_st = rotation
        rotary = Rotary(cos, sin, tuple(cos_st[a] for a in order), tuple(sin_st[a] for a in order))
    return Operand(view.base, at[0], at[1], at[2], sizes[1], sizes[2], sizes[3], at[3], offset, rotary, sizes[0])


def _logical(graph: Graph, name: str) -> View:
    """Tensor `name` as a 4-D view of itself: a 3-D (N, S, D) tensor is batch 1 with N heads."""
    view = identity(name, graph.tensors[name].shape)
    return with_unit_axis(view, 0) if len(view.sizes) == 3 else view


def _ungroup(gv: GraphView, members: set[str]) -> Regroup:
    """A regroup step for K or V: a repeat over query heads as exporters write it (Unsqueeze at 2, Expand, a Reshape
    to B x H x S x D or the same elements in another shape) is read ungrouped, the kernel mapping query head h to KV
    head h / group itself."""
    tensors = gv.graph.tensors

    def step(view: View, passed: list[Op]) -> View | None:
        name, readers = view.base, members | {o.name for o in passed}
        r = gv.source(name, "Reshape")
        e = r and gv.source(r.inputs[0], "Expand")
        u = e and gv.source(e.inputs[0], "Unsqueeze")
        if not (u and gv.private(name, readers) and gv.private(r.inputs[0], {r.name})):
            return None
        src, rep = u.inputs[0], tensors[e.outputs[0]].shape
        b, h, s, d = tensors[src].shape if len(tensors[src].shape) == 4 else (0, 0, 0, 0)
        if not gv.private(e.inputs[0], {e.name}) or (tensors[u.outputs[0]].shape, rep) != (
            (b, h, 1, s, d),
            (b, h, rep[2], s, d),
        ):
            return None
        index = reshaped(view, tensors[name].shape, (b, h * rep[2], s, d))  # the repeat's output as 4-D
        head = Affine(0, tuple(int(k == 1) for k in range(len(view.sizes))))
        if index is None or len(view.sizes) != 4 or index[1] != head or any(a.coefs[1] for a in index[:1] + index[2:]):
            return None  # the head axis must be read as it is for h / group to be the KV head
        passed.extend([r, e, u])
        return View(src, (view.sizes[0], h, *view.sizes[2:]), index)

    return step


def _rotary(gv: GraphView, members: set[str], elem: int, found: list[tuple]) -> Regroup:
    """A regroup step for Q or K: HF's rotary embedding (ragc.RotateHalf, made by match_norm) is applied as the
    kernel reads the operand, the view moving on to the rotation's input; `elem` is the view's head-element axis,
    which must be the rotated last axis. What it absorbs goes into `found` (once)."""
    tensors = gv.graph.tensors

    def step(view: View, passed: list[Op]) -> View | None:
        op = gv.source(view.base, ROTATE_HALF)
        if op is None or found or not gv.private(view.base, members | {o.name for o in passed}):
            return None
        shape = tensors[op.inputs[0]].shape
        axes = [_single_axis(a, view.sizes) if n > 1 else None for a, n in zip(view.index, shape, strict=True)]
        whole = all(a is None or view.sizes[a] == n for a, n in zip(axes, shape, strict=True))
        if -1 in axes or axes[-1] != elem or not whole:
            return None  # each axis of the rotation read whole as one axis of the view, its last as the element

        def strides_of(name: str) -> list[int]:
            per_axis = broadcast_strides(tensors[name].shape, len(shape))
            out = [0] * len(view.sizes)
            for axis, logical in enumerate(axes):
                if logical is not None:  # a unit axis is always at 0
                    out[logical] = per_axis[axis]
            return out

        x, cos, sin = op.inputs
        found.append((cos, sin, strides_of(cos), strides_of(sin)))
        passed.append(op)
        return View(x, view.sizes, view.index)

    return step


def _single_axis(index: Affine, sizes: tuple[int, ...]) -> int:
    """The view axis an index reads as it is (coefficient 1, no offset, nothing else but unit axes), else -1."""
    live = [k for k, (c, n) in enumerate(zip(index.coefs, sizes, strict=True)) if c and n > 1]
    return live[0] if index.offset == 0 and len(live) == 1 and index.coefs[live[0]] == 1 else -1


def _first(*steps: Regroup | None) -> Regroup:
    """A regroup step that takes the first of `steps` that moves the view."""

    def step(view: View, passed: list[Op]) -> View | None:
        return next((m for s in steps if s is not None and (m := s(view, passed)) is not None), None)

    return step


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


def _operands(
    gv: GraphView, members: set[str], names: tuple[str, str, str, str], k_rows: bool = False, ungroup: bool = True
):
    """Q, K, V and Y operands and the ops absorbed: Q, K and V are read through the movement ops before them (K and
    V also through a head repeat, when both have one), those ops absorbed where nothing else needs them; Y is
    written through a Transpose after it. `k_rows`: names[1] holds K as (B, H, S, D)."""
    graph, operands, passed = gv.graph, [], []
    for role, name in enumerate(names[:3]):
        start = _logical(graph, name)
        if role == 1 and k_rows:
            start = start.permuted([0, 1, 3, 2])  # K^T's axes
        rotation: list[tuple] = []
        rotary = _rotary(gv, members, 2 if role == 1 else 3, rotation) if role < 2 else None
        view, ops = trace(gv, start, _first(_ungroup(gv, members) if role and ungroup else None, rotary))
        operands.append(_operand(graph, view, role == 1, rotation[0] if rotation else None))
        passed += ops
    if ungroup and None not in operands[1:] and operands[1].heads != operands[2].heads:
        return _operands(gv, members, names, k_rows, ungroup=False)  # only one of K and V repeats as expected
    src, axis_of, ops = _absorb_output(gv, names[3])
    out = identity(src, graph.tensors[src].shape).permuted(axis_of) if ops else _logical(graph, names[3])
    operands.append(_operand(graph, out, False))
    return operands, droppable(gv, passed, members) + ops


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
    batch = q.batch
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
