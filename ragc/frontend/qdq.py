"""QDQ int8 models (onnxruntime's quantize_static, QuantFormat.QDQ) as float ops every processor runs.

A DequantizeLinear of constants (weights, int32 biases) is evaluated here: (q - zero_point) * scale in float32,
per tensor or per `axis`, the numbers onnxruntime's DequantizeLinear gives. A QuantizeLinear whose every
consumer is a DequantizeLinear with the same per-tensor scale and zero point becomes the elementwise chain
(clip(round_half_even(x / scale) + zp, qmin, qmax) - zp) * scale, which the GPU fuses into one kernel or the
epilogue of the Conv/MatMul/Gemm before it: activations take exactly the values of the int8 grid, arithmetic
between them is float32. onnxruntime computes the fused QLinear kernels with int32 accumulation and a float
requantisation, so outputs agree to one quantization step (a rounding tie that falls the other way).
Anything else (QLinearConv, MatMulInteger, ConvInteger, a QuantizeLinear feeding a graph output) is left as it
is: the placement gives it to the CPU, where onnxruntime runs it.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from ragc.errors import ModelError
from ragc.frontend import gs_bridge

QUANT_RANGE = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255)}


def values(tensor: gs.Tensor | None) -> np.ndarray | None:
    """A constant's array, None for anything computed."""
    return tensor.values if isinstance(tensor, gs.Constant) else None


def scale_and_zero(node: gs.Node) -> tuple[np.ndarray, np.ndarray] | None:
    """A Q/DQ node's constant scale and zero point (zero point 0 of the int8 type when left out)."""
    scale = values(node.inputs[1])
    zero = values(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2].name else np.zeros((), np.int8)
    if scale is None or zero is None or node.attrs.get("block_size", 0):
        return None
    return scale, zero


def dequantize(q: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int = 1) -> np.ndarray:
    """ONNX DequantizeLinear of constants, in float32: scale and zero point per tensor or along `axis`."""
    if scale.size > 1:
        shape = [1] * q.ndim
        shape[axis % q.ndim] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((q.astype(np.int64) - zero.astype(np.int64)).astype(np.float32) * scale).astype(scale.dtype)


def _fits(q: np.ndarray, scale: np.ndarray, axis: int) -> bool:
    """Whether a per-tensor scale, or a per-axis one as long as that axis of `q`, dequantizes `q` as ONNX says."""
    return scale.size == 1 or (-q.ndim <= axis < q.ndim and scale.ndim == 1 and scale.size == q.shape[axis])


def fold_constant_dequantize(graph: gs.Graph) -> gs.Graph:
    """Each DequantizeLinear of a constant tensor -> the float32 constant it gives."""
    for node in [n for n in graph.nodes if n.op == "DequantizeLinear"]:
        q, params = values(node.inputs[0]), scale_and_zero(node)
        axis = node.attrs.get("axis", 1)
        if q is None or params is None or node.outputs[0] in graph.outputs:
            continue
        if not _fits(q, params[0], axis):
            name = node.name or node.outputs[0].name
            raise ModelError(
                f"DequantizeLinear {name!r}: a scale of {params[0].size} values does not fit axis {axis} of a "
                f"{tuple(q.shape)} tensor; give one scale, or one per element along a valid axis"
            )
        value = dequantize(q, *params, axis=axis)
        out = node.outputs[0]
        out.to_constant(value)
        out.inputs.clear()
        node.outputs.clear()
    return gs_bridge.cleanup(graph)


def same(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray] | None) -> bool:
    """Whether two (scale, zero point) pairs are the same grid."""
    return b is not None and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def fake_quant(graph: gs.Graph, x: gs.Tensor, name: str, scale: np.ndarray, zero: np.ndarray) -> gs.Variable:
    """The float chain of one per-tensor Q -> DQ pair on `x` (its nodes named `name`.fq*); returns its output."""
    lo, hi = QUANT_RANGE[np.dtype(zero.dtype)]
    dtype = scale.dtype
    z = float(zero.reshape(-1)[0])
    steps = [("Div", scale), ("Round", None)]
    if z:
        steps.append(("Add", np.array(z, dtype)))
    steps.append(("Clip", (np.array(lo, dtype), np.array(hi, dtype))))
    if z:
        steps.append(("Sub", np.array(z, dtype)))
    steps.append(("Mul", scale))
    for i, (op, const) in enumerate(steps):
        out = gs.Variable(f"{name}.fq{i}", dtype=x.dtype, shape=x.shape)
        if const is None:
            operands = []
        elif isinstance(const, tuple):
            operands = [gs.Constant(f"{name}.fq{i}.{k}", c.reshape(())) for k, c in enumerate(const)]
        else:
            operands = [gs.Constant(f"{name}.fq{i}.c", const.reshape(()))]
        graph.nodes.append(gs.Node(op, f"{name}.fq{i}", inputs=[x, *operands], outputs=[out]))
        x = out
    return x


def per_tensor(params: tuple[np.ndarray, np.ndarray] | None) -> bool:
    """Whether a Q/DQ node's (scale, zero point) is one int8/uint8 grid for the whole tensor."""
    return params is not None and params[0].size == 1 and np.dtype(params[1].dtype) in QUANT_RANGE


def fake_quantize_activations(graph: gs.Graph) -> gs.Graph:
    """Each QuantizeLinear read only by matching DequantizeLinears (per-tensor int8/uint8) -> its float chain."""
    for q in [n for n in graph.nodes if n.op == "QuantizeLinear"]:
        params, mid = scale_and_zero(q), q.outputs[0]
        if not per_tensor(params):
            continue
        consumers = list(mid.outputs)
        if mid in graph.outputs or not consumers:
            continue
        if not all(d.op == "DequantizeLinear" and same(params, scale_and_zero(d)) for d in consumers):
            continue
        y = fake_quant(graph, q.inputs[0], q.name or mid.name, *params)
        for dq in consumers:  # an Identity keeps a graph output's name; remove_inference_noops drops the others
            dq.op, dq.inputs, dq.attrs = "Identity", [y], {}
        q.outputs = []
    return gs_bridge.cleanup(graph)
