"""Index-producing and running reductions on the GPU: ArgMax, ArgMin (rows as in reduce.py) and CumSum.

ArgMax/ArgMin decide as onnxruntime's sequential scan does: the first (select_last_index: the last) position of
the largest (smallest) value, where a NaN never wins except at position 0, which then is the answer.
"""

from __future__ import annotations

from codegen.gpu.lowering import Dispatch, attr, constant, fp32_reason, glsl_type, grid, lowers, numel
from codegen.gpu.ops.index import offset_expr
from codegen.gpu.ops.movement import typed_reason
from codegen.gpu.ops.reduce import row_params
from ragc.ir import Graph, Op


def _rows_along(shape: tuple[int, ...], axis: int) -> tuple[int, int, int, str]:
    """(rows, row length, stride along the axis, GLSL base offset of `row`) of rows along `axis`."""
    outer, size, inner = numel(shape[:axis]), shape[axis], numel(shape[axis + 1 :])
    return outer * inner, size, inner, offset_expr((outer, inner), (size * inner, 1), "row")


def _arg_reason(graph: Graph, op: Op) -> str | None:
    if graph.tensors[op.outputs[0]].dtype != "int64":
        return f"{op.op_type} gives int64"
    return fp32_reason(graph, Op(op.name, op.op_type, op.inputs[:1], []))


@lowers("ArgMax", "ArgMin", check=_arg_reason)
def lower_arg(graph: Graph, op: Op) -> list[Dispatch]:
    shape = graph.tensors[op.inputs[0]].shape
    rows, size, inner, base = _rows_along(shape, attr(op, "axis", 0) % len(shape))
    params, groups = row_params(rows, size)
    params.update(
        base=base,
        elem=f"k * {inner}u",
        better=">" if op.op_type == "ArgMax" else "<",
        last=bool(attr(op, "select_last_index", 0)),
    )
    return [Dispatch("argmax.comp.j2", params, (op.outputs[0], op.inputs[0]), groups)]


def _cumsum_reason(graph: Graph, op: Op) -> str | None:
    if constant(graph, op.inputs[1]) is None:
        return f"CumSum's axis {op.inputs[1]} must be a constant"
    return typed_reason(graph, [op.inputs[0], *op.outputs], ("float32", "int32", "int64"))


@lowers("CumSum", check=_cumsum_reason)
def lower_cumsum(graph: Graph, op: Op) -> list[Dispatch]:
    x = graph.tensors[op.inputs[0]]
    axis = int(constant(graph, op.inputs[1]).reshape(-1)[0]) % len(x.shape)
    rows, size, inner, base = _rows_along(x.shape, axis)
    params = {
        "rows": rows,
        "n": size,
        "inner": inner,
        "base": base,
        "data_type": glsl_type(x.dtype),
        "exclusive": bool(attr(op, "exclusive", 0)),
        "reverse": bool(attr(op, "reverse", 0)),
    }
    return [Dispatch("cumsum.comp.j2", params, (op.outputs[0], op.inputs[0]), grid(rows))]
