"""Conv on the GPU (1-D and 2-D, groups, strides, pads, auto_pad, dilations) with bias and a fused epilogue:
an implicit GEMM through templates/gemm.comp.j2 when a group has many output channels, else a direct kernel."""

from __future__ import annotations

from typing import Any

from codegen.gpu.lowering import Dispatch, attr, fp32_reason, grid, lowers, numel
from codegen.gpu.ops.eltwise import epilogue, own_inputs
from codegen.gpu.ops.gemm import gemm_dispatches
from ragc.ir import Graph, Op

GEMM_MIN_CHANNELS = 16  # output channels per group from which the implicit GEMM pays off


def window_pads(
    op: Op, spatial: tuple[int, ...], kernel: tuple[int, ...], strides: list[int], dilations: list[int]
) -> list[int]:
    """ONNX begin pads then end pads of a sliding-window op, resolving auto_pad (NOTSET, VALID, SAME_*)."""
    mode = attr(op, "auto_pad", "NOTSET")
    rank = len(spatial)
    if mode in ("NOTSET", ""):
        return list(attr(op, "pads", [0] * 2 * rank))
    if mode == "VALID":
        return [0] * 2 * rank
    begin, end = [], []
    for size, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
        total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
        first = total // 2 if mode == "SAME_UPPER" else total - total // 2
        begin.append(first)
        end.append(total - first)
    return begin + end


def as_2d(shape: tuple[int, ...]) -> tuple[int, int]:
    """Spatial dims as (H, W): 1-D windows are rows of height 1."""
    return (1, shape[0]) if len(shape) == 1 else (shape[0], shape[1])


def window(op: Op, x_shape: tuple[int, ...], kernel: tuple[int, ...]) -> dict[str, Any]:
    """Template params of a 1-D/2-D sliding window: sizes, strides, dilations and begin pads as H/W values."""
    rank = len(kernel)
    strides = list(attr(op, "strides", [1] * rank))
    dilations = list(attr(op, "dilations", [1] * rank))
    pads = window_pads(op, tuple(x_shape[2:]), kernel, strides, dilations)
    if rank == 1:
        strides, dilations, pads = [1, *strides], [1, *dilations], [0, pads[0], 0, pads[1]]
    h, w = as_2d(tuple(x_shape[2:]))
    kh, kw = as_2d(kernel)
    return {
        "H": h,
        "W": w,
        "KH": kh,
        "KW": kw,
        "SH": strides[0],
        "SW": strides[1],
        "DH": dilations[0],
        "DW": dilations[1],
        "PT": pads[0],
        "PL": pads[1],
        "PB": pads[2],
        "PR": pads[3],
    }


def window_reason(graph: Graph, op: Op) -> str | None:
    """The common check of sliding-window ops: float32, and 1-D or 2-D."""
    if len(graph.tensors[op.inputs[0]].shape) not in (3, 4):
        return f"only 1-D and 2-D {op.op_type} runs on the GPU"
    return fp32_reason(graph, op)


@lowers("Conv", check=window_reason)
def lower_conv(graph: Graph, op: Op) -> list[Dispatch]:
    inputs = own_inputs(op)
    x, w = graph.tensors[inputs[0]].shape, graph.tensors[inputs[1]].shape
    out = graph.tensors[op.attrs.get("ragc_epilogue_input", op.outputs[0])].shape
    groups, cout, cg = attr(op, "group", 1), w[0], w[1]
    m = cout // groups
    oh, ow = as_2d(tuple(out[2:]))
    geo = window(op, x, tuple(w[2:]))
    bias = len(inputs) > 2 and bool(inputs[2])
    bindings = list(inputs[:3] if bias else inputs[:2])
    if m < GEMM_MIN_CHANNELS:
        fragment, final = epilogue(graph, op, len(bindings) + 1)
        params = {
            "leaves": fragment.buffers,
            "epilogue": fragment.function,
            **geo,
            "count": numel(out),
            "OH": oh,
            "OW": ow,
            "COUT": cout,
            "C": x[1],
            "CG": cg,
            "M": m,
            "has_bias": bias,
        }
        tensors = (final, *bindings, *fragment.tensors)
        return [Dispatch("conv_direct.comp.j2", params, tensors, grid(params["count"]))]
    plane = geo["H"] * geo["W"]
    layout = {
        "a_rs": cg * geo["KH"] * geo["KW"],
        "a_cs": 1,
        "a_base": f"(b % {groups}u) * {m * cg * geo['KH'] * geo['KW']}u",
        "b_base": f"(b / {groups}u) * {x[1] * plane}u + (b % {groups}u) * {cg * plane}u",
        "im2col": True,
        "OW": ow,
        **geo,
    }
    bias_term = (inputs[2], f"(b % {groups}u) * {m}u + m", "1.0") if bias else None
    shape = (m, oh * ow, cg * geo["KH"] * geo["KW"], x[0] * groups)
    return gemm_dispatches(graph, op, shape, layout, (inputs[1], inputs[0]), bias_term)  # A = weights, B = x
