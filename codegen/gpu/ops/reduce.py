"""Reductions on the GPU: the Reduce* ops, Softmax, LayerNormalization and RMSNormalization.

Each is a set of rows: one output row combines `n` input elements in a fixed order (templates/_rows.glsl.j2), by
one invocation when rows are short, else by one workgroup with a shared-memory tree. No atomics anywhere.
"""

from __future__ import annotations

from typing import Any

from codegen.gpu.lowering import (
    Dispatch,
    attr,
    broadcast_index,
    constant,
    float_literal,
    fp32_reason,
    grid,
    lowers,
    numel,
    strides,
)
from codegen.gpu.ops.index import merge_dims, offset_expr
from ragc.ir import Graph, Op

GROUP_MIN = 64  # rows at least this long are reduced by a whole workgroup
WIDE_MIN = 2048  # rows at least this long get 256 lanes instead of 64
# op -> (combine, initial value, map of each element "@", map of the result "@"); Max and Min propagate NaN
REDUCE_OPS = {
    "ReduceSum": ("ragc_plus", "0.0", "@", "@"),
    "ReduceMean": ("ragc_plus", "0.0", "@", "@ / {n}.0"),
    "ReduceMax": ("ragc_max", "uintBitsToFloat(0xff800000u)", "@", "@"),
    "ReduceMin": ("ragc_min", "uintBitsToFloat(0x7f800000u)", "@", "@"),
    "ReduceProd": ("ragc_times", "1.0", "@", "@"),
    "ReduceL1": ("ragc_plus", "0.0", "abs(@)", "@"),
    "ReduceL2": ("ragc_plus", "0.0", "@ * @", "sqrt(@)"),
    "ReduceSumSquare": ("ragc_plus", "0.0", "@ * @", "@"),
}


def row_params(rows: int, n: int) -> tuple[dict[str, Any], tuple[int, int, int]]:
    """Template params choosing one invocation or one workgroup per row, and the launch grid."""
    group = n >= GROUP_MIN
    local = 256 if n >= WIDE_MIN else 64
    params = {"rows": rows, "n": n, "group": group, "local": local if group else 256}
    return params, grid(rows * local, local) if group else grid(rows)


def _data_reason(graph: Graph, op: Op) -> str | None:
    """fp32_reason on the data input and every output (other inputs are compile-time constants or checked apart)."""
    return fp32_reason(graph, Op(op.name, op.op_type, op.inputs[:1], op.outputs, {}))


def _axes_input(op: Op) -> str:
    return op.inputs[1] if len(op.inputs) > 1 else ""


def _reduce_reason(graph: Graph, op: Op) -> str | None:
    axes = _axes_input(op)
    if axes and constant(graph, axes) is None:
        return f"axes input {axes} must be a constant"
    return _data_reason(graph, op)


def reduced_axes(graph: Graph, op: Op) -> list[int]:
    """The sorted, non-negative axes a Reduce* op reduces (attribute or constant input; empty -> all, or none with
    noop_with_empty_axes)."""
    rank = len(graph.tensors[op.inputs[0]].shape)
    axes_in = _axes_input(op)
    axes = constant(graph, axes_in).reshape(-1).tolist() if axes_in else attr(op, "axes", [])
    if not axes:
        return [] if attr(op, "noop_with_empty_axes", 0) else list(range(rank))
    return sorted({a % rank for a in axes})


def _row_dispatch(
    template: str, params: dict[str, Any], grid_: tuple[int, int, int], buffers: tuple[str, ...], base: str, elem: str
) -> Dispatch:
    return Dispatch(template, {**params, "base": base, "elem": elem}, buffers, grid_)


@lowers(*REDUCE_OPS, check=_reduce_reason)
def lower_reduce(graph: Graph, op: Op) -> list[Dispatch]:
    shape = graph.tensors[op.inputs[0]].shape
    axes = reduced_axes(graph, op)
    st = strides(shape)
    kept = [d for d in range(len(shape)) if d not in axes]
    kept_sizes, (kept_strides,) = merge_dims([shape[d] for d in kept], [st[d] for d in kept])
    red_sizes, (red_strides,) = merge_dims([shape[d] for d in axes], [st[d] for d in axes])
    params, groups = row_params(numel(kept_sizes), numel(red_sizes))
    combine, init, pre, post = REDUCE_OPS[op.op_type]
    params.update(combine=combine, init=init, pre=pre, post=post.format(n=params["n"]))
    return [
        _row_dispatch(
            "reduce.comp.j2",
            params,
            groups,
            (op.outputs[0], op.inputs[0]),
            offset_expr(kept_sizes, kept_strides, "row"),
            offset_expr(red_sizes, red_strides, "k"),
        )
    ]


@lowers("Softmax", check=fp32_reason)
def lower_softmax(graph: Graph, op: Op) -> list[Dispatch]:
    shape = graph.tensors[op.inputs[0]].shape
    legacy = graph.opset < 13  # before opset 13 Softmax normalises the flattened dims [axis:] together
    axis = attr(op, "axis", 1 if legacy else -1) % len(shape)
    outer = numel(shape[:axis])
    size, inner = (numel(shape[axis:]), 1) if legacy else (shape[axis], numel(shape[axis + 1 :]))
    params, groups = row_params(outer * inner, size)
    base = offset_expr((outer, inner), (size * inner, 1), "row")
    return [
        _row_dispatch(
            "softmax.comp.j2", params, groups, (op.outputs[0], op.inputs[0]), base, offset_expr((size,), (inner,), "k")
        )
    ]


def _layernorm_reason(graph: Graph, op: Op) -> str | None:
    if attr(op, "stash_type", 1) != 1:
        return "only stash_type=1 (float32 statistics) runs on the GPU"
    return fp32_reason(graph, op)


@lowers("LayerNormalization", "RMSNormalization", check=_layernorm_reason)
def lower_layernorm(graph: Graph, op: Op) -> list[Dispatch]:
    """LayerNormalization; RMSNormalization is the same without the mean (and without bias)."""
    shape = graph.tensors[op.inputs[0]].shape
    axis = attr(op, "axis", -1) % len(shape)
    norm_shape = shape[axis:]
    outputs = [n for n in op.outputs if n]
    has_bias = len(op.inputs) > 2 and bool(op.inputs[2])
    mean, inv = (op.outputs + ["", ""])[1:3]
    params, groups = row_params(numel(shape[:axis]), numel(norm_shape))
    params.update(
        epsilon=float_literal(attr(op, "epsilon", 1e-5)),
        rms=op.op_type == "RMSNormalization",
        has_bias=has_bias,
        mean_binding=outputs.index(mean) if mean else 0,
        inv_binding=outputs.index(inv) if inv else 0,
        x_binding=len(outputs),
        scale_index=broadcast_index(graph.tensors[op.inputs[1]].shape, norm_shape, "k"),
        bias_index=broadcast_index(graph.tensors[op.inputs[2]].shape, norm_shape, "k") if has_bias else "",
    )
    buffers = (*outputs, *op.inputs[: 3 if has_bias else 2])
    return [Dispatch("layernorm.comp.j2", params, buffers, groups, writes=len(outputs))]
