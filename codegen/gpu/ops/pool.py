"""Pooling (MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool) and LRN on the GPU."""

from __future__ import annotations

from codegen.gpu.lowering import Dispatch, attr, float_literal, fp32_reason, grid, lowers, numel
from codegen.gpu.ops.conv import as_2d, window, window_reason
from codegen.gpu.ops.reduce import GROUP_MIN, row_params
from ragc.ir import Graph, Op


def _pool_reason(graph: Graph, op: Op) -> str | None:
    if len(op.outputs) > 1 and op.outputs[1]:
        return "MaxPool's Indices output is not produced on the GPU"
    if op.op_type == "AveragePool" and any(d != 1 for d in attr(op, "dilations", [1])):
        return "dilated AveragePool is not supported on the GPU"
    return window_reason(graph, op)


@lowers("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", check=_pool_reason)
def lower_pool(graph: Graph, op: Op) -> list[Dispatch]:
    x, out = graph.tensors[op.inputs[0]].shape, graph.tensors[op.outputs[0]].shape
    if op.op_type == "GlobalAveragePool" and numel(x[2:]) >= GROUP_MIN:
        return _plane_mean(op, numel(x[:2]), numel(x[2:]))
    if op.op_type.startswith("Global"):
        kernel, geo_op = tuple(x[2:]), Op(op.name, op.op_type, op.inputs, op.outputs, {})
    else:
        kernel, geo_op = tuple(attr(op, "kernel_shape", [])), op
    oh, ow = as_2d(tuple(out[2:]))
    params = {
        **window(geo_op, x, kernel),
        "count": numel(out),
        "OH": oh,
        "OW": ow,
        "is_max": op.op_type.endswith("MaxPool"),
        # onnxruntime starts GlobalMaxPool at the lowest float, MaxPool at -inf (its all -inf windows differ)
        "max_init": "-3.4028234663852886e38" if op.op_type == "GlobalMaxPool" else "uintBitsToFloat(0xff800000u)",
        "count_include_pad": bool(attr(op, "count_include_pad", 0)),
    }
    return [Dispatch("pool.comp.j2", params, (op.outputs[0], op.inputs[0]), grid(params["count"]))]


def _plane_mean(op: Op, planes: int, n: int) -> list[Dispatch]:
    """GlobalAveragePool over large planes as a row mean, a workgroup per plane (ops/reduce.py): one invocation
    per channel took 322 us for 32x112x112 on the H200 (efficientnet_b0's squeeze-excite pools, 40% of its time)."""
    params, groups = row_params(planes, n)
    params.update(combine="ragc_plus", init="0.0", pre="@", post=f"@ / {n}.0", base=f"row * {n}u", elem="k")
    return [Dispatch("reduce.comp.j2", params, (op.outputs[0], op.inputs[0]), groups)]


@lowers("LRN", check=fp32_reason)
def lower_lrn(graph: Graph, op: Op) -> list[Dispatch]:
    shape = graph.tensors[op.inputs[0]].shape
    size = attr(op, "size", 1)
    params = {
        "count": numel(shape),
        "C": shape[1],
        "plane": numel(shape[2:]),
        "before": (size - 1) // 2,
        "after": size - 1 - (size - 1) // 2,
        "bias": float_literal(attr(op, "bias", 1.0)),
        "scale": float_literal(attr(op, "alpha", 1e-4) / size),
        "beta": float_literal(attr(op, "beta", 0.75)),
    }
    return [Dispatch("lrn.comp.j2", params, (op.outputs[0], op.inputs[0]), grid(params["count"]))]
