"""Einsum on the GPU, for the two-operand contractions exporters write ("bhid,bhjd->bhij", "bij,bjk->bik",
"i,j->ij", with "..."): letters split into batch, free-in-A, free-in-B and contracted ones; an operand is copied
into (batch, free, contracted) order only when its layout is not already a strided GEMM operand, then one batched
GEMM, then a copy into the output's letter order when that differs from (batch, free A, free B)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from codegen.gpu.lowering import Dispatch, attr, fp32_reason, lowers, numel, strides
from codegen.gpu.ops.gemm import gemm_dispatches
from codegen.gpu.ops.movement import strided
from ragc.ir import Graph, Op, Tensor


@dataclass(frozen=True)
class Contraction:
    a: str  # letters of each operand and of the output, "..." expanded
    b: str
    out: str
    batch: str
    free_a: str
    free_b: str
    summed: str


def parse(equation: str, ranks: tuple[int, int]) -> Contraction | str:
    """The contraction of a two-operand equation, or why it is not one the GPU runs."""
    eq = equation.replace(" ", "")
    if "->" not in eq or eq.count(",") != 1:
        return "Einsum needs two operands and an explicit output (a->b form)"
    inputs, out = eq.split("->")
    a, b = inputs.split(",")
    used = set(re.sub(r"[^a-zA-Z]", "", eq))
    spare = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in used]
    widths = [rank - len(term.replace("...", "")) for term, rank in zip((a, b), ranks, strict=True)]
    width = max(widths)
    dots = "".join(spare[:width])
    a, b = (term.replace("...", dots[width - w :]) for term, w in zip((a, b), widths, strict=True))
    out = out.replace("...", dots)
    if len(set(a)) != len(a) or len(set(b)) != len(b) or len(set(out)) != len(out):
        return "Einsum with a repeated letter in one term (a diagonal) is not run on the GPU"
    if any(c not in a + b for c in out) or any(c not in b + out for c in a) or any(c not in a + out for c in b):
        return "Einsum that sums a letter of one operand alone is not run on the GPU"
    keep = lambda s, cond: "".join(c for c in s if cond(c))  # noqa: E731
    return Contraction(
        a=a,
        b=b,
        out=out,
        batch=keep(out, lambda c: c in a and c in b),
        free_a=keep(out, lambda c: c in a and c not in b),
        free_b=keep(out, lambda c: c in b and c not in a),
        summed=keep(a, lambda c: c in b and c not in out),
    )


def _contraction(graph: Graph, op: Op) -> Contraction | str:
    ranks = tuple(len(graph.tensors[n].shape) for n in op.inputs)
    if len(ranks) != 2:
        return "Einsum needs two operands"
    return parse(attr(op, "equation", ""), ranks)


def _einsum_reason(graph: Graph, op: Op) -> str | None:
    c = _contraction(graph, op)
    if isinstance(c, str):
        return c
    a = dict(zip(c.a, graph.tensors[op.inputs[0]].shape, strict=True))
    b = dict(zip(c.b, graph.tensors[op.inputs[1]].shape, strict=True))
    if any(a[x] != b[x] for x in c.batch + c.summed):
        return "Einsum with broadcast letters is not run on the GPU"
    return fp32_reason(graph, op)


def _sizes(graph: Graph, op: Op, c: Contraction) -> dict[str, int]:
    sizes = dict(zip(c.a, graph.tensors[op.inputs[0]].shape, strict=True))
    sizes.update(zip(c.b, graph.tensors[op.inputs[1]].shape, strict=True))
    return sizes


def _arrange(graph: Graph, op: Op, name: str, term: str, first: str, second: str, c: Contraction, tag: str):
    """A GEMM layout (row stride, column stride, tensor) of operand `term`, its rows the letters `first` and its
    columns `second`, copying it into (batch, first, second) order when it is not laid out that way or
    transposed; returns the layout and any copy dispatch."""
    sizes = _sizes(graph, op, c)
    rows, cols = numel([sizes[x] for x in first]), numel([sizes[x] for x in second])
    if term == c.batch + first + second:
        return (cols, 1, name), []
    if term == c.batch + second + first:
        return (1, rows, name), []
    order = c.batch + first + second
    st = dict(zip(term, strides(graph.tensors[name].shape), strict=True))
    temp = f"{op.name}/{tag}"
    graph.tensors[temp] = Tensor(temp, tuple(sizes[x] for x in order), "float32")
    return (cols, 1, temp), [strided(temp, name, "float32", [sizes[x] for x in order], [st[x] for x in order])]


@lowers("Einsum", check=_einsum_reason)
def lower_einsum(graph: Graph, op: Op) -> list[Dispatch]:
    c = _contraction(graph, op)
    sizes = _sizes(graph, op, c)
    (a_rs, a_cs, a), copies_a = _arrange(graph, op, op.inputs[0], c.a, c.free_a, c.summed, c, "a")
    (b_rs, b_cs, b), copies_b = _arrange(graph, op, op.inputs[1], c.b, c.summed, c.free_b, c, "b")
    m, n, k = (numel([sizes[x] for x in s]) for s in (c.free_a, c.free_b, c.summed))
    natural = c.batch + c.free_a + c.free_b
    out = op.outputs[0] if c.out == natural else f"{op.name}/out"
    if out != op.outputs[0]:
        graph.tensors[out] = Tensor(out, tuple(sizes[x] for x in natural), "float32")
    layout = {
        "a_rs": a_rs,
        "a_cs": a_cs,
        "a_base": f"b * {m * k}u",
        "b_rs": b_rs,
        "b_cs": b_cs,
        "b_base": f"b * {k * n}u",
    }
    batch = numel([sizes[x] for x in c.batch])
    dispatches = [*copies_a, *copies_b, *gemm_dispatches(graph, op, (m, n, k, batch), layout, (a, b), out=out)]
    if out != op.outputs[0]:
        st = dict(zip(natural, strides([sizes[x] for x in natural]), strict=True))
        dispatches.append(strided(op.outputs[0], out, "float32", [sizes[x] for x in c.out], [st[x] for x in c.out]))
    return dispatches
