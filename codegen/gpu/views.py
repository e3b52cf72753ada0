"""Strided views through movement ops: a tensor that Transposes, Reshapes (and the other alias ops), Gathers of one
constant index, Slices and Splits make from another, seen as an offset and one stride per axis into that other
tensor, so a kernel can read it there and the movement ops need not run (tinygrad's ShapeTracker, backwards).

A view keeps, for every axis of the tensor it reads (its base), that axis' index as an affine function of the
logical indices. Moving the base back through a Transpose, Gather, Slice or Split is affine; through a Reshape it
is a mixed-radix split of the flat index, which exists when every logical term lands in one digit without carry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from codegen.gpu.lowering import ALIAS_OPS, attr, strides
from codegen.gpu.match import GraphView
from codegen.gpu.ops.movement import slice_starts
from ragc.ir import Op


@dataclass(frozen=True)
class Affine:
    offset: int
    coefs: tuple[int, ...]  # one per logical axis


@dataclass(frozen=True)
class View:
    """Logical element [i_0, ..., i_n] is element [index[0](i), index[1](i), ...] of tensor `base`."""

    base: str
    sizes: tuple[int, ...]  # of the logical axes
    index: tuple[Affine, ...]  # one per axis of `base`

    def strides(self, base_shape: Sequence[int]) -> tuple[int, list[int]]:
        """(element offset, element stride of each logical axis) into the row-major `base`."""
        st = strides(base_shape)
        offset = sum(a.offset * s for a, s in zip(self.index, st, strict=True))
        axes = range(len(self.sizes))
        return offset, [sum(a.coefs[k] * s for a, s in zip(self.index, st, strict=True)) for k in axes]

    def permuted(self, order: Sequence[int]) -> View:
        """The same elements with logical axis i being this view's axis order[i]."""
        index = tuple(Affine(a.offset, tuple(a.coefs[k] for k in order)) for a in self.index)
        return View(self.base, tuple(self.sizes[k] for k in order), index)


def identity(name: str, shape: Sequence[int]) -> View:
    n = len(shape)
    return View(name, tuple(shape), tuple(Affine(0, tuple(int(k == d) for k in range(n))) for d in range(n)))


def with_unit_axis(view: View, at: int) -> View:
    """The view with a logical axis of size 1 inserted at `at` (a 3-D operand read as batch 1)."""
    sizes = (*view.sizes[:at], 1, *view.sizes[at:])
    index = tuple(Affine(a.offset, (*a.coefs[:at], 0, *a.coefs[at:])) for a in view.index)
    return View(view.base, sizes, index)


def _digits(flat: Affine, sizes: Sequence[int], radices: Sequence[int]) -> tuple[Affine, ...] | None:
    """`flat` (an affine function of logical indices of `sizes`) as mixed-radix digits of `radices`, each affine;
    None where a term would straddle two digits or a digit could carry."""
    places = strides(radices)
    offsets, rest = [], flat.offset
    for place in places:
        offsets.append(rest // place)
        rest %= place
    coefs = [[0] * len(sizes) for _ in radices]
    peak = list(offsets)  # the largest value each digit reaches
    for axis, (c, n) in enumerate(zip(flat.coefs, sizes, strict=True)):
        if c == 0 or n == 1:
            continue
        pairs = enumerate(zip(places, radices, strict=True))
        digit = next((d for d, (p, r) in pairs if r > 1 and p <= c < p * r), None)
        if digit is None or c % places[digit]:
            return None
        coefs[digit][axis] = c // places[digit]
        peak[digit] += coefs[digit][axis] * (n - 1)
    if any(p >= r for p, r in zip(peak, radices, strict=True)):
        return None
    return tuple(Affine(o, tuple(c)) for o, c in zip(offsets, coefs, strict=True))


def reshaped(view: View, out_shape: Sequence[int], in_shape: Sequence[int]) -> tuple[Affine, ...] | None:
    """The view's index into `in_shape`, its base (of `out_shape`) being a reshape of that; None where not affine."""
    offset, flat = view.strides(out_shape)  # the flat index, the same on both sides of a reshape
    return _digits(Affine(offset, tuple(flat)), view.sizes, in_shape)


def _constant_index(view: GraphView, name: str) -> int | None:
    t = view.graph.tensors[name]
    return int(np.asarray(t.data).reshape(-1)[0]) if t.is_constant and t.data.size == 1 else None


def _step(gv: GraphView, op: Op, v: View) -> tuple[Affine, ...] | None:
    """The view's index into `op`'s first input, its base being one of `op`'s outputs; None where none is affine."""
    tensors = gv.graph.tensors
    out_shape, in_shape = tensors[v.base].shape, tensors[op.inputs[0]].shape
    zero = Affine(0, (0,) * len(v.sizes))
    if op.op_type in ALIAS_OPS and len([o for o in op.outputs if o]) == 1:
        return reshaped(v, out_shape, in_shape)
    if op.op_type == "Transpose":
        perm = attr(op, "perm", list(range(len(in_shape)))[::-1])
        index = [zero] * len(in_shape)
        for axis, src in enumerate(perm):
            index[src] = v.index[axis]
        return tuple(index)
    if op.op_type == "Gather" and len(op.inputs) > 1:
        position = _constant_index(gv, op.inputs[1])
        axis = attr(op, "axis", 0) % len(in_shape)
        kept = len(tensors[op.inputs[1]].shape)  # a 1-element index of rank 1 keeps the axis (size 1)
        if position is None or kept > 1:
            return None
        fixed = Affine(position % in_shape[axis], zero.coefs)
        index = list(v.index)
        return tuple(index[:axis] + [fixed] + index[axis + kept :])
    if op.op_type == "Slice":
        first, step = slice_starts(gv.graph, op)
        pairs = zip(v.index, first, step, strict=True)
        return tuple(Affine(f + s * a.offset, tuple(s * c for c in a.coefs)) for a, f, s in pairs)
    if op.op_type == "Split":
        axis = attr(op, "axis", 0) % len(in_shape)
        before = op.outputs[: op.outputs.index(v.base)]
        shift = sum(tensors[o].shape[axis] for o in before)
        index = list(v.index)
        index[axis] = replace(index[axis], offset=index[axis].offset + shift)
        return tuple(index)
    return None


MOVEMENT = frozenset({*ALIAS_OPS, "Transpose", "Gather", "Slice", "Split"})
Regroup = Callable[[View, list[Op]], View | None]  # a caller's own step (a head repeat), tried before the others


def trace(gv: GraphView, view: View, regroup: Regroup | None = None) -> tuple[View, list[Op]]:
    """`view` moved back through movement ops to the furthest tensor it can be read from, and those ops (in the
    order met; `droppable` tells which of them a reader of the view still needs). `regroup` may move the base
    itself, appending the ops it passes."""
    passed: list[Op] = []
    while True:
        moved = regroup(view, passed) if regroup is not None else None
        if moved is not None:
            view = moved
            continue
        op = gv.producers.get(view.base)
        index = _step(gv, op, view) if op is not None and op.op_type in MOVEMENT else None
        if index is None:
            return view, passed
        view = View(op.inputs[0], view.sizes, index)
        passed.append(op)


def droppable(gv: GraphView, passed: Sequence[Op], keep: set[str]) -> list[Op]:
    """The ops of `passed` that nothing needs once the ops named in `keep` read through them: every output read
    only by those and by other droppable ops, none a graph output."""
    out = {op.name: op for op in passed}  # one entry per op, however often it was passed
    changed = True
    while changed:
        changed = False
        for op in list(out.values()):
            readers = keep | set(out)
            if any(not gv.private(t, readers) for t in op.outputs if t):
                del out[op.name]
                changed = True
    return list(out.values())
