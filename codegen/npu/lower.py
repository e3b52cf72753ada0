"""Lower ONNX ops to NPU kernel invocations: GEMM (MatMul, Gemm, Conv through im2col), elementwise, softmax.

Each lowering checks what it needs (`check_*` returns the reason an op cannot run, or None) and appends one
step to a `ProgramBuilder`. A step names its kernel reference, how each runtime tensor is reshaped on the host
before it is padded into a data buffer (`transforms`, applied in order), which buffers come from the packed
weights, and how the padded result is cut and reshaped back. Constants are transformed here, once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from codegen.npu.catalog import KERNELS, MATMUL, SOFTMAX, KernelSpec
from ragc import ir

UNARY = {"Relu": "relu", "Gelu": "gelu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Swish": "swish"}
BINARY = {"Add": "add", "Mul": "mul"}


@dataclass
class Operand:
    """One kernel input: a runtime tensor reshaped by `transforms` on the host, or constant data (already laid out)."""

    shape: tuple[int, ...]  # logical shape after the transforms, before padding
    tensor: str | None = None
    transforms: list[dict[str, Any]] = field(default_factory=list)
    data: np.ndarray | None = None


@dataclass
class ProgramBuilder:
    """Collects the steps of one partition and the padded fp32 weights they read."""

    device: str
    keep_weights: bool = True  # False: plan the steps only (the cost model's view), skip packing constants
    steps: list[dict[str, Any]] = field(default_factory=list)
    weights: dict[str, np.ndarray] = field(default_factory=dict)

    def add_step(
        self,
        op: ir.Op,
        spec: KernelSpec,
        sizes: tuple[int, ...],
        operands: list[Operand],
        output: dict[str, Any],
        lowering: str,
    ) -> None:
        padded = spec.padded(sizes)
        ref = spec.reference(self.device, padded)
        data_args = [a for a in ref["arguments"] if "dtype" in a]
        entries = []
        for operand, arg in zip(operands, data_args, strict=False):
            entry: dict[str, Any] = {"role": arg["role"]}
            if operand.data is not None:
                key = f"{op.name}.{arg['role']}"
                if self.keep_weights:
                    self.weights[key] = pad(operand.data.astype(np.float32), tuple(arg["shape"]), spec.pad_value)
                entry["weight"] = key
            else:
                entry.update(tensor=operand.tensor, transforms=operand.transforms, shape=list(operand.shape))
            entries.append(entry)
        out_arg = data_args[len(operands)]
        self.steps.append(
            {
                "op": op.name,
                "op_type": op.op_type,
                "lowering": lowering,
                "kernel": ref,
                "inputs": entries,
                "output": {"role": out_arg["role"], **output},
            }
        )


def pad(data: np.ndarray, shape: tuple[int, ...], pad_value: str) -> np.ndarray:
    """`data` in the top-left corner of an array of `shape` filled with the kernel's pad value."""
    out = np.full(shape, float(pad_value), dtype=np.float32)
    out[tuple(slice(0, s) for s in data.shape)] = data
    return out


def _tensor(graph: ir.Graph, name: str) -> ir.Tensor:
    return graph.tensors[name]


def _operand(
    graph: ir.Graph,
    name: str,
    transforms: list[dict[str, Any]],
    shape: tuple[int, ...],
    constant: Callable[[np.ndarray], np.ndarray],
) -> Operand:
    """A runtime tensor with its host transforms, or the constant laid out at compile time by `constant`."""
    t = _tensor(graph, name)
    if t.is_constant:
        return Operand(shape=shape, data=constant(np.asarray(t.data, dtype=np.float32)))
    return Operand(shape=shape, tensor=name, transforms=transforms)


# ---- GEMM family ---------------------------------------------------------------------------------------------


def _gemm(
    b: ProgramBuilder, op: ir.Op, a: Operand, w: Operand, bias: np.ndarray | None, out: dict[str, Any], lowering: str
) -> None:
    """C[m, n] = A[m, k] @ B[k, n] (+ bias, folded in as a ones column of A times a bias row of B)."""
    (m, k), n = a.shape, w.shape[1]
    if bias is not None:
        k += 1
        a = _append_ones(a)
        w = Operand(shape=(k, n), data=np.concatenate([w.data, bias.reshape(1, n)], axis=0))
        lowering += "+bias_row"
    b.add_step(op, MATMUL, (m, k, n), [a, w], {"shape": [m, n], **out}, lowering)


def _append_ones(a: Operand) -> Operand:
    shape = (a.shape[0], a.shape[1] + 1)
    if a.data is not None:
        return Operand(shape=shape, data=np.concatenate([a.data, np.ones((a.shape[0], 1), np.float32)], axis=1))
    return Operand(shape=shape, tensor=a.tensor, transforms=[*a.transforms, {"append_ones": 1}])


def check_matmul(graph: ir.Graph, op: ir.Op) -> str | None:
    a, w = (_tensor(graph, n) for n in op.inputs[:2])
    if len(a.shape) < 2 or len(w.shape) < 2:
        return "MatMul with a 1-D operand: the NPU GEMM takes matrices; run it on another processor"
    if math.prod(w.shape[:-2]) != 1:
        return f"batched MatMul (B is {list(w.shape)}): the NPU GEMM takes one B matrix; run it elsewhere"
    return None


def lower_matmul(b: ProgramBuilder, graph: ir.Graph, op: ir.Op) -> None:
    a_t, w_t = (_tensor(graph, n) for n in op.inputs[:2])
    k, n = w_t.shape[-2:]
    m = math.prod(a_t.shape) // k
    a = _operand(graph, a_t.name, [{"reshape": [m, k]}], (m, k), lambda x: x.reshape(m, k))
    w = _operand(graph, w_t.name, [{"reshape": [k, n]}], (k, n), lambda x: x.reshape(k, n))
    y = _tensor(graph, op.outputs[0])
    _gemm(b, op, a, w, None, {"tensor": y.name, "transforms": [{"reshape": list(y.shape)}]}, "gemm")


def check_gemm(graph: ir.Graph, op: ir.Op) -> str | None:
    c = _tensor(graph, op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] else None
    w = _tensor(graph, op.inputs[1])
    if float(op.attrs.get("alpha", 1.0)) != 1.0 and not w.is_constant:
        return "Gemm with alpha != 1 and a runtime B: fold alpha into B first, or run it elsewhere"
    if c is None:
        return None
    if not w.is_constant:
        return "Gemm with a bias and a runtime B: the NPU folds bias into a packed B; split off the Add first"
    n = w.shape[0] if op.attrs.get("transB", 0) else w.shape[1]
    rows, cols = ((1, 1) + tuple(c.shape))[-2:]
    if not c.is_constant or rows != 1 or cols not in (1, n):
        return f"Gemm bias {c.name} {list(c.shape)} is not a constant row of {n}: the NPU folds only per-column bias"
    return None


def lower_gemm(b: ProgramBuilder, graph: ir.Graph, op: ir.Op) -> None:
    a_t, w_t = (_tensor(graph, n) for n in op.inputs[:2])
    trans_a, trans_b = int(op.attrs.get("transA", 0)), int(op.attrs.get("transB", 0))
    alpha, beta = float(op.attrs.get("alpha", 1.0)), float(op.attrs.get("beta", 1.0))
    m, k = a_t.shape[::-1] if trans_a else a_t.shape
    n = w_t.shape[0] if trans_b else w_t.shape[1]
    a = _operand(graph, a_t.name, [{"transpose": [1, 0]}] if trans_a else [], (m, k), lambda x: x.T if trans_a else x)
    w = _operand(
        graph, w_t.name, [{"transpose": [1, 0]}] if trans_b else [], (k, n), lambda x: alpha * (x.T if trans_b else x)
    )
    bias = None
    if len(op.inputs) > 2 and op.inputs[2]:
        bias = beta * np.broadcast_to(np.asarray(_tensor(graph, op.inputs[2]).data, np.float32).reshape(-1), (n,))
    _gemm(b, op, a, w, bias, {"tensor": op.outputs[0], "transforms": []}, "gemm")


def check_conv(graph: ir.Graph, op: ir.Op) -> str | None:
    x, w = (_tensor(graph, n) for n in op.inputs[:2])
    if len(x.shape) != 4:
        return f"Conv on a {len(x.shape)}-D input: the NPU lowering handles 2-D convolutions (NCHW) only"
    if int(op.attrs.get("group", 1)) != 1:
        return "grouped or depthwise Conv: no NPU GEMM lowering for groups > 1; run it on another processor"
    if not w.is_constant or any(n and not _tensor(graph, n).is_constant for n in op.inputs[2:]):
        return "Conv with runtime weights or bias: the NPU packs Conv weights at compile time"
    if op.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return "Conv with auto_pad SAME_*: give explicit pads (the front end normally does)"
    return None


def lower_conv(b: ProgramBuilder, graph: ir.Graph, op: ir.Op) -> None:
    """Conv as GEMM: im2col of X on the host [N*OH*OW, C*kh*kw] @ W reshaped [C*kh*kw, Cout] -> NCHW."""
    x_t, w_t = (_tensor(graph, n) for n in op.inputs[:2])
    y = _tensor(graph, op.outputs[0])
    cout, c, kh, kw = w_t.shape
    batch, _, oh, ow = y.shape
    m, k = batch * oh * ow, c * kh * kw
    pads = list(op.attrs.get("pads", [0, 0, 0, 0]))
    im2col = {
        "kernel": [kh, kw],
        "strides": list(op.attrs.get("strides", [1, 1])),
        "pads": pads,
        "dilations": list(op.attrs.get("dilations", [1, 1])),
        "output": [oh, ow],
    }
    a = Operand(shape=(m, k), tensor=x_t.name, transforms=[{"im2col": im2col}])
    w = Operand(shape=(k, cout), data=np.asarray(w_t.data, np.float32).reshape(cout, k).T)
    bias = np.asarray(_tensor(graph, op.inputs[2]).data, np.float32) if len(op.inputs) > 2 and op.inputs[2] else None
    out = {"tensor": y.name, "transforms": [{"reshape": [batch, oh, ow, cout]}, {"transpose": [0, 3, 1, 2]}]}
    _gemm(b, op, a, w, bias, out, "im2col+gemm")


# ---- elementwise and softmax ---------------------------------------------------------------------------------


def lower_elementwise(b: ProgramBuilder, graph: ir.Graph, op: ir.Op) -> None:
    """Flatten to L elements (broadcast operands expanded to the output shape on the host first) and pad L."""
    y = _tensor(graph, op.outputs[0])
    size = math.prod(y.shape)
    spec = KERNELS[BINARY.get(op.op_type) or UNARY[op.op_type]]
    operands = []
    for name in op.inputs[: len(spec.buffers) - 1]:
        t = _tensor(graph, name)
        transforms = ([] if t.shape == y.shape else [{"broadcast": list(y.shape)}]) + [{"reshape": [size]}]
        operands.append(_operand(graph, name, transforms, (size,), lambda x: np.broadcast_to(x, y.shape).reshape(size)))
    out = {"tensor": y.name, "shape": [size], "transforms": [{"reshape": list(y.shape)}]}
    b.add_step(op, spec, (size,), operands, out, "eltwise")


def check_swish(graph: ir.Graph, op: ir.Op) -> str | None:
    if float(op.attrs.get("alpha", 1.0)) != 1.0:
        return "Swish with alpha != 1: the NPU kernel is SiLU (alpha = 1); run it on another processor"
    return None


def check_softmax(graph: ir.Graph, op: ir.Op) -> str | None:
    rank = len(_tensor(graph, op.inputs[0]).shape)
    axis = int(op.attrs.get("axis", -1 if graph.opset >= 13 else 1))  # before opset 13 the default was 1
    if axis not in (-1, rank - 1):
        return f"Softmax over axis {axis} of a rank-{rank} tensor: the NPU kernel reduces the last axis only"
    return None


def lower_softmax(b: ProgramBuilder, graph: ir.Graph, op: ir.Op) -> None:
    """Rows of the last axis; each row padded with -inf so padding adds nothing to the sum."""
    y = _tensor(graph, op.outputs[0])
    cols = y.shape[-1]
    rows = math.prod(y.shape) // cols
    a = _operand(graph, op.inputs[0], [{"reshape": [rows, cols]}], (rows, cols), lambda x: x.reshape(rows, cols))
    out = {"tensor": y.name, "shape": [rows, cols], "transforms": [{"reshape": list(y.shape)}]}
    b.add_step(op, SOFTMAX, (rows, cols), [a], out, "softmax-rows")


def _no_check(graph: ir.Graph, op: ir.Op) -> str | None:
    return None


Lowering = tuple[Callable[[ir.Graph, ir.Op], str | None], Callable[[ProgramBuilder, ir.Graph, ir.Op], None]]
LOWERINGS: dict[str, Lowering] = {
    "MatMul": (check_matmul, lower_matmul),
    "Gemm": (check_gemm, lower_gemm),
    "Conv": (check_conv, lower_conv),
    "Add": (_no_check, lower_elementwise),
    "Mul": (_no_check, lower_elementwise),
    "Relu": (_no_check, lower_elementwise),
    "Gelu": (_no_check, lower_elementwise),
    "Sigmoid": (_no_check, lower_elementwise),
    "Tanh": (_no_check, lower_elementwise),
    "Swish": (check_swish, lower_elementwise),
    "Softmax": (check_softmax, lower_softmax),
}
