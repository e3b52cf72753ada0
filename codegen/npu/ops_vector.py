"""Vector-unit lowerings: elementwise ops (one ml/eltwise xclbin, the op picked per dispatch), Softmax,
LayerNormalization and RMSNormalization over the last axis, depthwise convolution, and the metadata ops that only
rename a tensor (alias steps, no kernel)."""

from __future__ import annotations

import math

import numpy as np

from codegen.npu.catalog import DWCONV, KERNELS, LAYERNORM, RMSNORM, SOFTMAX, Buffer
from codegen.npu.fuse import chain_entries, clip_bounds
from codegen.npu.lower import Operand, ProgramBuilder, all_of, float_reason, lowers, operand, tensor
from ragc import ir

UNARY = {"Relu": "relu", "Gelu": "gelu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Swish": "swish", "Clip": "clip"}
BINARY = {"Add": "add", "Mul": "mul"}
ALIASES = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")


def check_unary(graph: ir.Graph, op: ir.Op) -> str | None:
    if op.op_type == "Swish" and float(op.attrs.get("alpha", 1.0)) != 1.0:
        return "Swish with alpha != 1: the NPU kernel is SiLU (alpha = 1); run it on another processor"
    if op.op_type == "Clip" and clip_bounds(graph, op) is None:
        return "Clip with runtime bounds: the NPU takes constant min and max; run it elsewhere"
    return None


@lowers(*UNARY, *BINARY, check=all_of(float_reason, check_unary))
def lower_elementwise(b: ProgramBuilder, graph: ir.Graph, op: ir.Op) -> None:
    """Flatten to L elements (broadcast operands expanded to the output shape on the host first) and pad L."""
    y = tensor(graph, op.outputs[0])
    size = math.prod(y.shape)
    kind = BINARY.get(op.op_type) or UNARY[op.op_type]
    spec = KERNELS[kind]
    operands = []
    for name in op.inputs[: 2 if kind in ("add", "mul") else 1]:
        t = tensor(graph, name)
        transforms = ([] if t.shape == y.shape else [{"broadcast": list(y.shape)}]) + [{"reshape": [size]}]
        operands.append(operand(graph, name, transforms, (size,), lambda x: np.broadcast_to(x, y.shape).reshape(size)))
    (length,) = spec.padded((size,))
    buffers = [Buffer(r, "bfloat16", (length,)) for r in "AB"[: len(operands)]] + [Buffer("C", "bfloat16", (length,))]
    extra = {"dtype": "bf16", "out_dtype": "bfloat16"}
    if kind == "clip":
        extra["bounds"] = list(clip_bounds(graph, op))
    out = {"tensor": y.name, "shape": [size], "transforms": [{"reshape": list(y.shape)}]}
    b.add_step(op, spec, (length,), buffers, operands, out, "eltwise", "bf16", kind, extra)


def _last_axis(graph: ir.Graph, op: ir.Op, default: int) -> str | None:
    rank = len(tensor(graph, op.inputs[0]).shape)
    axis = int(op.attrs.get("axis", default))
    if axis not in (-1, rank - 1):
        return f"{op.op_type} over axis {axis} of a rank-{rank} tensor: the NPU kernel reduces the last axis only"
    return None


def check_softmax(graph: ir.Graph, op: ir.Op) -> str | None:
    return _last_axis(graph, op, -1 if graph.opset >= 13 else 1)  # before opset 13 the default axis was 1


def _rows(graph: ir.Graph, name: str) -> tuple[int, int]:
    shape = tensor(graph, name).shape
    return math.prod(shape[:-1]), shape[-1]


@lowers("Softmax", check=all_of(float_reason, check_softmax))
def lower_softmax(b: ProgramBuilder, graph: ir.Graph, op: ir.Op) -> None:
    """Rows of the last axis; each row padded with -inf so padding adds nothing to the sum."""
    rows, cols = _rows(graph, op.inputs[0])
    y = tensor(graph, op.outputs[0])
    a = operand(graph, op.inputs[0], [{"reshape": [rows, cols]}], (rows, cols), lambda x: x.reshape(rows, cols))
    padded = SOFTMAX.padded((rows, cols))
    buffers = [Buffer("A", "bfloat16", padded), Buffer("C", "bfloat16", padded)]
    out = {"tensor": y.name, "shape": [rows, cols], "transforms": [{"reshape": list(y.shape)}]}
    extra = {"dtype": "bf16", "out_dtype": "bfloat16"}
    b.add_step(op, SOFTMAX, padded, buffers, [a], out, "softmax-rows", "bf16", "", extra)


def check_norm(graph: ir.Graph, op: ir.Op) -> str | None:
    if sum(1 for name in op.outputs if name) > 1:
        return f"{op.op_type} with its statistics outputs used: the NPU kernel writes the normalised tensor only"
    if any(name and not tensor(graph, name).is_constant for name in op.inputs[1:]):
        return f"{op.op_type} with a runtime scale or bias: the NPU packs them at compile time"
    cols = tensor(graph, op.inputs[0]).shape[-1]
    if any(name and math.prod(tensor(graph, name).shape) not in (1, cols) for name in op.inputs[1:]):
        return f"{op.op_type} scale or bias is not one value per column: the NPU kernel takes [C] parameters"
    return _last_axis(graph, op, -1)


@lowers("LayerNormalization", "RMSNormalization", check=all_of(float_reason, check_norm))
def lower_norm(b: ProgramBuilder, graph: ir.Graph, op: ir.Op) -> None:
    """Rows of the last axis, normalised over the `cols` real columns (a runtime parameter: padding is ignored),
    times the scale (plus the bias for LayerNormalization)."""
    rows, cols = _rows(graph, op.inputs[0])
    spec = LAYERNORM if op.op_type == "LayerNormalization" else RMSNORM
    y = tensor(graph, op.outputs[0])
    padded = spec.padded((rows, cols))
    a = operand(graph, op.inputs[0], [{"reshape": [rows, cols]}], (rows, cols))
    params = [n for n in op.inputs[1 : 3 if spec is LAYERNORM else 2] if n]
    operands = [a] + [
        Operand((cols,), data=np.broadcast_to(tensor(graph, n).data.reshape(-1), (cols,))) for n in params
    ]
    buffers = [Buffer("A", "bfloat16", padded)] + [
        Buffer(r, "bfloat16", (padded[1],)) for r in ("gamma", "beta")[: len(params)]
    ]
    buffers.append(Buffer("C", "bfloat16", padded))
    extra = {"dtype": "bf16", "out_dtype": "bfloat16", "cols": cols, "epsilon": float(op.attrs.get("epsilon", 1e-5))}
    out = {"tensor": y.name, "shape": [rows, cols], "transforms": [{"reshape": list(y.shape)}]}
    b.add_step(op, spec, padded, buffers, operands, out, f"{spec.name}-rows", "bf16", "", extra)


def lower_dwconv(b: ProgramBuilder, graph: ir.Graph, op: ir.Op) -> None:
    """Depthwise Conv on the vector unit: X zero-padded on the host, one kh x kw filter per channel, the bias and
    the fused activation chain as its epilogue."""
    x_t, w_t = (tensor(graph, n) for n in op.inputs[:2])
    chain = b.fusion.get(op.name, [])
    y = tensor(graph, graph.op(chain[-1]).outputs[0] if chain else op.outputs[0])
    batch, channels, ih, iw = x_t.shape
    _, _, oh, ow = y.shape
    kh, kw = w_t.shape[2:]
    top, left, bottom, right = list(op.attrs.get("pads", [0, 0, 0, 0]))
    sizes = (batch, channels, ih + top + bottom, iw + left + right, oh, ow, kh * kw)
    padded = DWCONV.padded(sizes)
    cp = padded[1]
    epilogue, operands = (
        [],
        [
            Operand(sizes[:4], tensor=x_t.name, transforms=[{"pad_spatial": [top, left, bottom, right]}]),
            Operand((channels, kh * kw), data=np.asarray(w_t.data, np.float32).reshape(channels, kh * kw)),
        ],
    )
    buffers = [Buffer("A", "bfloat16", padded[:4]), Buffer("W", "bfloat16", (cp, kh * kw))]
    if len(op.inputs) > 2 and op.inputs[2]:
        operands.append(Operand((channels,), data=np.asarray(tensor(graph, op.inputs[2]).data, np.float32)))
        buffers.append(Buffer("bias", "bfloat16", (cp,)))
        epilogue.append({"kind": "bias", "op": op.name, "input": "bias"})
    for kind, fused, other in chain_entries(graph, op, chain):
        entry = {"kind": kind, "op": fused.name}
        if kind == "clip":
            entry["min"], entry["max"] = clip_bounds(graph, fused)
        elif kind == "scale":
            entry["value"] = float(np.asarray(tensor(graph, other).data).reshape(-1)[0])
        elif kind == "bias":
            operands.append(Operand((channels,), data=np.asarray(tensor(graph, other).data, np.float32).reshape(-1)))
            buffers.append(Buffer(f"bias{len(buffers)}", "bfloat16", (cp,)))
            entry["input"] = buffers[-1].role
        epilogue.append(entry)
    buffers.append(Buffer("C", "bfloat16", (batch, cp, oh, ow)))
    strides = list(op.attrs.get("strides", [1, 1]))
    extra = {
        "dtype": "bf16",
        "out_dtype": "bfloat16",
        "epilogue": epilogue,
        "conv": {"kernel": [kh, kw], "strides": strides, "dilations": list(op.attrs.get("dilations", [1, 1]))},
    }
    out = {"tensor": y.name, "shape": [batch, channels, oh, ow], "transforms": []}
    variant = f"bf16_{kh}x{kw}_s{strides[0]}"
    b.add_step(
        op, DWCONV, padded, buffers, operands, out, "depthwise", variant, "-".join(e["kind"] for e in epilogue), extra
    )


def check_alias(graph: ir.Graph, op: ir.Op) -> str | None:
    if tensor(graph, op.inputs[0]).is_constant:
        return f"{op.op_type} of a constant: folded by the front end, nothing for the NPU to do"
    return None


@lowers(*ALIASES, check=check_alias)
def lower_alias(b: ProgramBuilder, graph: ir.Graph, op: ir.Op) -> None:
    y = tensor(graph, op.outputs[0])
    b.add_alias(op, op.inputs[0], y.name, y.shape)
