"""Data movement on the GPU: Transpose, Concat, Split, Slice and Expand as strided copies; Gather, Pad, Resize.

Every index is resolved at compile time into sizes, strides, offsets and tables baked into the kernel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from codegen.gpu.lowering import (
    Dispatch,
    attr,
    broadcast_strides,
    constant,
    float_literal,
    fp32_reason,
    glsl_type,
    grid,
    lowers,
    numel,
)
from codegen.gpu.lowering import strides as row_strides
from codegen.gpu.ops.index import merge_dims, offset_expr
from ragc.ir import Graph, Op

COPY_TYPES = ("float32", "float16", "int32", "int64", "bool")  # element types the copy kernels move
PAD_MODES = ("constant", "reflect", "edge", "wrap")


def typed_reason(graph: Graph, names: Sequence[str], allowed: Sequence[str] = COPY_TYPES) -> str | None:
    """None when every named tensor has one of the `allowed` dtypes and a static, non-empty shape."""
    for name in [n for n in names if n]:
        t = graph.tensors[name]
        if t.dtype not in allowed:
            return f"{name} is {t.dtype}; the GPU {'/'.join(allowed)} kernels do not take it"
        if any(not isinstance(d, int) or d <= 0 for d in t.shape):
            return f"{name} has shape {t.shape}; the GPU needs static non-empty shapes"
    return None


def constants_reason(graph: Graph, op: Op, first: int) -> str | None:
    """None when every present input from index `first` on is a constant (read at compile time)."""
    for name in op.inputs[first:]:
        if name and constant(graph, name) is None:
            return f"input {name} of {op.op_type} must be a constant (it is baked into the kernel)"
    return None


def strided(
    dst: str,
    src: str,
    dtype: str,
    sizes: Sequence[int],
    step: Sequence[int],
    base: int = 0,
    scatter: bool = False,
) -> Dispatch:
    """A copy over `sizes` (row-major flat index i): dst[i] = src[base + i . step], or the reverse when scattering."""
    merged, (merged_step,) = merge_dims(sizes, step)
    params = {
        "count": numel(sizes),
        "offset": offset_expr(merged, merged_step, "i", base),
        "scatter": scatter,
        "data_type": glsl_type(dtype),
    }
    return Dispatch("strided.comp.j2", params, (dst, src), grid(params["count"]))


def _copy(graph: Graph, op: Op, sizes: Sequence[int], step: Sequence[int], base: int = 0, out: int = 0) -> Dispatch:
    dtype = graph.tensors[op.inputs[0]].dtype
    return strided(op.outputs[out], op.inputs[0], dtype, sizes, step, base)


def _data_reason(graph: Graph, op: Op) -> str | None:
    return typed_reason(graph, [op.inputs[0], *op.outputs])


def _sliced_reason(graph: Graph, op: Op) -> str | None:
    return constants_reason(graph, op, 1) or _data_reason(graph, op)


@lowers("Transpose", check=_data_reason)
def lower_transpose(graph: Graph, op: Op) -> list[Dispatch]:
    shape = graph.tensors[op.inputs[0]].shape
    perm = attr(op, "perm", list(range(len(shape)))[::-1])
    st = row_strides(shape)
    return [_copy(graph, op, [shape[p] for p in perm], [st[p] for p in perm])]


@lowers("Expand", check=_data_reason)
def lower_expand(graph: Graph, op: Op) -> list[Dispatch]:
    shape, out = graph.tensors[op.inputs[0]].shape, graph.tensors[op.outputs[0]].shape
    return [_copy(graph, op, out, broadcast_strides(shape, len(out)))]


def slice_starts(graph: Graph, op: Op) -> tuple[list[int], list[int]]:
    """Per axis of the input, the first element taken and the step (ONNX clamping rules)."""
    shape = graph.tensors[op.inputs[0]].shape
    rank = len(shape)
    if len(op.inputs) > 1:
        values = [constant(graph, n).reshape(-1).tolist() if n else None for n in (op.inputs[1:] + [""] * 4)[:4]]
        starts, _, axes, steps = values
    else:
        starts, axes, steps = attr(op, "starts", []), attr(op, "axes", None), None
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    first, step = [0] * rank, [1] * rank
    for axis, start, stride in zip(axes, starts, steps, strict=True):
        dim, axis = shape[axis % rank], axis % rank
        start = start + dim if start < 0 else start
        first[axis] = min(max(start, 0), dim if stride > 0 else dim - 1)
        step[axis] = stride
    return first, step


@lowers("Slice", check=_sliced_reason)
def lower_slice(graph: Graph, op: Op) -> list[Dispatch]:
    first, step = slice_starts(graph, op)
    st = row_strides(graph.tensors[op.inputs[0]].shape)
    base = int(np.dot(first, st))
    out = graph.tensors[op.outputs[0]].shape
    return [_copy(graph, op, out, [s * k for s, k in zip(st, step, strict=True)], base)]


def _axis_offsets(graph: Graph, names: Sequence[str], axis: int) -> list[int]:
    """Running offsets along `axis` of the tensors `names` laid end to end."""
    sizes = [graph.tensors[n].shape[axis] for n in names]
    return [int(x) for x in np.cumsum([0, *sizes[:-1]])]


@lowers("Split", check=_data_reason)
def lower_split(graph: Graph, op: Op) -> list[Dispatch]:
    shape = graph.tensors[op.inputs[0]].shape
    axis = attr(op, "axis", 0) % len(shape)
    st = row_strides(shape)
    offsets = _axis_offsets(graph, op.outputs, axis)
    return [
        _copy(graph, op, graph.tensors[name].shape, st, offsets[k] * st[axis], out=k)
        for k, name in enumerate(op.outputs)
    ]


def _concat_reason(graph: Graph, op: Op) -> str | None:
    return typed_reason(graph, [*op.inputs, *op.outputs])


@lowers("Concat", check=_concat_reason)
def lower_concat(graph: Graph, op: Op) -> list[Dispatch]:
    out = graph.tensors[op.outputs[0]]
    axis = attr(op, "axis", 0) % len(out.shape)
    st = row_strides(out.shape)
    offsets = _axis_offsets(graph, op.inputs, axis)
    return [
        strided(out.name, name, out.dtype, graph.tensors[name].shape, st, off * st[axis], True)
        for name, off in zip(op.inputs, offsets, strict=True)
    ]


def _gather_reason(graph: Graph, op: Op) -> str | None:
    return typed_reason(graph, op.inputs[1:], ("int32", "int64")) or _data_reason(graph, op)


@lowers("Gather", check=_gather_reason)
def lower_gather(graph: Graph, op: Op) -> list[Dispatch]:
    data, indices = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    axis = attr(op, "axis", 0) % len(data.shape)
    params = {
        "count": numel(graph.tensors[op.outputs[0]].shape),
        "inner": numel(data.shape[axis + 1 :]),
        "positions": numel(indices.shape),
        "axis_len": data.shape[axis],
        "data_type": glsl_type(data.dtype),
        "index_type": glsl_type(indices.dtype),
    }
    return [Dispatch("gather.comp.j2", params, (op.outputs[0], *op.inputs[:2]), grid(params["count"]))]


def _pad_reason(graph: Graph, op: Op) -> str | None:
    mode = attr(op, "mode", "constant")
    if mode not in PAD_MODES:
        return f"Pad mode {mode!r} is not supported on the GPU"
    return constants_reason(graph, op, 1) or _data_reason(graph, op)


def _literal(value: float, dtype: str) -> str:
    """A GLSL constant of `dtype` holding `value`."""
    if dtype.startswith("float"):
        return f"{glsl_type(dtype)}({float_literal(value)})"
    return f"{glsl_type(dtype)}({int(value)})"


def pad_amounts(graph: Graph, op: Op) -> tuple[list[int], list[int], float]:
    """Begin and end pads per axis (negative ones crop) and the constant fill value."""
    rank = len(graph.tensors[op.inputs[0]].shape)
    inputs = (op.inputs + ["", "", ""])[1:4]
    if inputs[0]:
        pads = constant(graph, inputs[0]).reshape(-1).tolist()
        value = float(constant(graph, inputs[1]).reshape(-1)[0]) if inputs[1] else 0.0
    else:
        pads, value = attr(op, "pads", [0] * 2 * rank), float(attr(op, "value", 0.0))
    axes = constant(graph, inputs[2]).reshape(-1).tolist() if inputs[2] else list(range(rank))
    begin, end = [0] * rank, [0] * rank
    for k, axis in enumerate(axes):
        begin[axis % rank], end[axis % rank] = int(pads[k]), int(pads[k + len(axes)])
    return begin, end, value


def pad_dispatch(
    op: Op, dtype: str, shape: Sequence[int], out: Sequence[int], pads: tuple[list[int], list[int]], mode: str, value
) -> Dispatch:
    """A pad.comp.j2 dispatch: begin and end `pads` per axis (negative ones crop), `mode` as Pad's."""
    begin, end = pads
    # per axis: output size, size of the input window left after negative pads crop it, begin pad, input stride,
    # first input element of that window
    dims = [
        (o, n - max(-b, 0) - max(-e, 0), max(b, 0), s, max(-b, 0))
        for o, n, b, e, s in zip(out, shape, begin, end, row_strides(shape), strict=True)
    ]
    params = {
        "count": numel(out),
        "dims": dims,
        "mode": mode,
        "value": _literal(value, dtype),
        "data_type": glsl_type(dtype),
    }
    return Dispatch("pad.comp.j2", params, (op.outputs[0], op.inputs[0]), grid(params["count"]))


@lowers("Pad", check=_pad_reason)
def lower_pad(graph: Graph, op: Op) -> list[Dispatch]:
    x, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    begin, end, value = pad_amounts(graph, op)
    return [pad_dispatch(op, x.dtype, x.shape, out.shape, (begin, end), attr(op, "mode", "constant"), value)]


RESIZE_COORDS = (
    "half_pixel",
    "half_pixel_symmetric",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
    "tf_half_pixel_for_nn",
)
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _resize_reason(graph: Graph, op: Op) -> str | None:
    checks = [
        (graph.opset < 11, "Resize before opset 11 is not supported on the GPU"),
        (attr(op, "mode", "nearest") not in ("nearest", "linear"), "only nearest and linear Resize run on the GPU"),
        (
            attr(op, "coordinate_transformation_mode", "half_pixel") not in RESIZE_COORDS,
            f"coordinate_transformation_mode {attr(op, 'coordinate_transformation_mode', '')!r} is not supported",
        ),
        (attr(op, "nearest_mode", "round_prefer_floor") not in NEAREST_MODES, "unsupported nearest_mode"),
        (attr(op, "mode", "nearest") == "linear" and attr(op, "antialias", 0), "antialiased Resize is not supported"),
        (not any((op.inputs + ["", "", ""])[2:4]), "Resize needs a scales or sizes input"),
    ]
    reason = next((why for bad, why in checks if bad), None)
    reason = (
        reason
        or constants_reason(graph, op, 1)
        or fp32_reason(graph, Op(op.name, op.op_type, op.inputs[:1], op.outputs))
    )
    return reason or _fractional_length_reason(graph, op)


def _fractional_length_reason(graph: Graph, op: Op) -> str | None:
    """align_corners and pytorch_half_pixel read the resized length: from a scale that does not give a whole
    length, the ONNX reference uses the fractional length, onnxruntime the rounded one; leave those to the CPU."""
    mode = attr(op, "coordinate_transformation_mode", "half_pixel")
    if mode not in ("align_corners", "pytorch_half_pixel"):
        return None
    shape, out = graph.tensors[op.inputs[0]].shape, graph.tensors[op.outputs[0]].shape
    for in_len, out_len, scale in zip(shape, out, resize_scales(graph, op), strict=True):
        exact = float(np.float32(in_len) * scale)
        if exact != out_len and (mode == "align_corners" or out_len <= 1 < exact):
            return f"{mode} with a scale giving a fractional length ({exact:g}) is ambiguous in ONNX; give sizes"
    return None


def resize_scales(graph: Graph, op: Op) -> list[np.float32]:
    """The float32 scale of every axis, as onnxruntime derives it from `scales` or `sizes`."""
    shape = graph.tensors[op.inputs[0]].shape
    rank = len(shape)
    scales_in, sizes_in = (op.inputs + ["", "", ""])[2:4]
    axes = [a % rank for a in attr(op, "axes", list(range(rank)))]
    scales = [np.float32(1.0)] * rank
    given = constant(graph, scales_in).reshape(-1) if scales_in else np.zeros(0)
    if given.size:
        for axis, s in zip(axes, given, strict=True):
            scales[axis] = np.float32(s)
        return scales
    sizes = constant(graph, sizes_in).reshape(-1)
    ratios = [np.float32(size) / np.float32(shape[axis]) for axis, size in zip(axes, sizes, strict=True)]
    policy = attr(op, "keep_aspect_ratio_policy", "stretch")
    if policy != "stretch":
        ratios = [(min if policy == "not_larger" else max)(ratios)] * len(axes)
    for axis, r in zip(axes, ratios, strict=True):
        scales[axis] = np.float32(r)
    return scales


def _source_coords(mode: str, out_len: int, in_len: int, scale: np.float32) -> np.ndarray:
    """float32 input coordinate of every output position along one axis (onnxruntime's arithmetic)."""
    x, half = np.arange(out_len, dtype=np.float32), np.float32(0.5)
    if mode == "asymmetric":
        return x / scale
    if mode == "tf_half_pixel_for_nn":
        return (x + half) / scale
    if mode == "align_corners":
        return x * np.float32(in_len - 1) / np.float32(out_len - 1) if out_len > 1 else np.zeros_like(x)
    if mode == "pytorch_half_pixel" and out_len <= 1:
        return np.zeros_like(x)
    centred = (x + half) / scale - half
    if mode == "half_pixel_symmetric":
        adjust = np.float32(out_len) / (scale * np.float32(in_len))
        return np.float32(in_len) / np.float32(2) * (np.float32(1) - adjust) + centred
    return centred


def _nearest(x: np.ndarray, mode: str) -> np.ndarray:
    if mode in ("floor", "ceil"):
        return (np.floor if mode == "floor" else np.ceil)(x)
    whole = np.trunc(x)
    tie = x == whole + np.float32(0.5)
    away = whole + np.sign(x) * (np.abs(x - whole) >= 0.5)  # std::round: halves away from zero
    return np.where(tie, np.floor(x) if mode == "round_prefer_floor" else np.ceil(x), away)


@lowers("Resize", check=_resize_reason)
def lower_resize(graph: Graph, op: Op) -> list[Dispatch]:
    shape, out = graph.tensors[op.inputs[0]].shape, graph.tensors[op.outputs[0]].shape
    linear = attr(op, "mode", "nearest") == "linear"
    coord_mode = attr(op, "coordinate_transformation_mode", "half_pixel")
    axes, order = [], []
    for out_len, in_len, stride, scale in zip(out, shape, row_strides(shape), resize_scales(graph, op), strict=True):
        x = _source_coords(coord_mode, out_len, in_len, scale)
        if linear:
            x = np.clip(x, 0, in_len - 1)
            lo = np.floor(x).astype(np.int64)
            hi, weight = np.minimum(lo + 1, in_len - 1), x - lo.astype(np.float32)
        else:
            lo = np.clip(_nearest(x, attr(op, "nearest_mode", "round_prefer_floor")), 0, in_len - 1).astype(np.int64)
            hi, weight = lo, np.zeros_like(x)
        if out_len == in_len and np.array_equal(lo, np.arange(in_len)) and not weight.any():
            order.append(("copy", -1, out_len, stride))
            continue
        order.append(("table", len(axes), out_len, stride))
        axes.append((out_len, (lo * stride).tolist(), (hi * stride).tolist(), [float_literal(w) for w in weight]))
    params = {"count": numel(out), "axes": axes, "order": order, "linear": linear}
    return [Dispatch("resize.comp.j2", params, (op.outputs[0], op.inputs[0]), grid(params["count"]))]
