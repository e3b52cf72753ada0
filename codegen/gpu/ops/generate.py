"""Ops that make or mask tensors by position on the GPU: Range, Trilu and Tile."""

from __future__ import annotations

from codegen.gpu.lowering import Dispatch, attr, constant, glsl_type, grid, lowers, numel
from codegen.gpu.ops.expressions import literal
from codegen.gpu.ops.movement import constants_reason, pad_dispatch, typed_reason
from ragc.ir import Graph, Op


def _range_reason(graph: Graph, op: Op) -> str | None:
    return typed_reason(graph, [*op.inputs, *op.outputs], ("float32", "int32", "int64"))


@lowers("Range", check=_range_reason)
def lower_range(graph: Graph, op: Op) -> list[Dispatch]:
    """Integers in parallel (start + i * delta); floats in one invocation adding delta in turn, as onnxruntime."""
    out = graph.tensors[op.outputs[0]]
    serial = out.dtype == "float32"
    params = {"count": numel(out.shape), "data_type": glsl_type(out.dtype), "serial": serial}
    buffers = (op.outputs[0], op.inputs[0], op.inputs[2])
    return [Dispatch("range.comp.j2", params, buffers, grid(1 if serial else params["count"]))]


def _trilu_reason(graph: Graph, op: Op) -> str | None:
    if len(graph.tensors[op.inputs[0]].shape) < 2:
        return "Trilu needs a tensor of rank 2 or more"
    return constants_reason(graph, op, 1) or typed_reason(graph, [op.inputs[0], *op.outputs])


@lowers("Trilu", check=_trilu_reason)
def lower_trilu(graph: Graph, op: Op) -> list[Dispatch]:
    x = graph.tensors[op.inputs[0]]
    k = int(constant(graph, op.inputs[1]).reshape(-1)[0]) if len(op.inputs) > 1 and op.inputs[1] else 0
    params = {
        "count": numel(x.shape),
        "rows": x.shape[-2],
        "cols": x.shape[-1],
        "k": k,
        "upper": bool(attr(op, "upper", 1)),
        "data_type": glsl_type(x.dtype),
        "zero": literal(0, x.dtype) if x.dtype != "bool" else "uint8_t(0u)",
    }
    return [Dispatch("trilu.comp.j2", params, (op.outputs[0], op.inputs[0]), grid(params["count"]))]


def _tile_reason(graph: Graph, op: Op) -> str | None:
    return constants_reason(graph, op, 1) or typed_reason(graph, [op.inputs[0], *op.outputs])


@lowers("Tile", check=_tile_reason)
def lower_tile(graph: Graph, op: Op) -> list[Dispatch]:
    """Tile is Pad in wrap mode with everything padded at the end."""
    x, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    end = [o - n for o, n in zip(out.shape, x.shape, strict=True)]
    return [pad_dispatch(op, x.dtype, x.shape, out.shape, ([0] * len(end), end), "wrap", 0)]
