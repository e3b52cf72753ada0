"""Fused attention (ONNX Attention, opset 23): softmax(Q K^T * scale [+ causal mask]) V in one kernel, grouped-query
heads included (mlir-aie programming_examples/ml/mha: MHA and GQA). Q, K and V come as [B, H, S, D] or as
[B, S, H*D] with q_num_heads / kv_num_heads; padded keys are masked by their real count, a runtime parameter."""

from __future__ import annotations

import math

from codegen.npu.catalog import ATTENTION, Buffer
from codegen.npu.lower import ProgramBuilder, all_of, float_reason, lowers, operand, tensor
from ragc import ir


def _layout(graph: ir.Graph, op: ir.Op, index: int, heads_attr: str) -> tuple[int, int, int, int]:
    """(B, H, S, D) of input `index`."""
    shape = tensor(graph, op.inputs[index]).shape
    if len(shape) == 4:
        return tuple(shape)  # type: ignore[return-value]
    heads = int(op.attrs[heads_attr])
    return shape[0], heads, shape[1], shape[2] // heads


def check_attention(graph: ir.Graph, op: ir.Op) -> str | None:
    if len(op.inputs) > 3 and any(op.inputs[3:]):
        return "Attention with a mask or a past KV cache: the NPU kernel takes Q, K, V only (causal by attribute)"
    if sum(1 for name in op.outputs if name) > 1:
        return "Attention with present_key/value or qk outputs used: the NPU kernel writes Y only"
    if float(op.attrs.get("softcap", 0.0)) != 0.0 or int(op.attrs.get("qk_matmul_output_mode", 0)) != 0:
        return "Attention with softcap or a qk output mode: not in the NPU kernel; run it elsewhere"
    ranks = {len(tensor(graph, n).shape) for n in op.inputs[:3]}
    if ranks not in ({3}, {4}) or (ranks == {3} and not {"q_num_heads", "kv_num_heads"} <= set(op.attrs)):
        return "Attention inputs must all be 4-D, or 3-D with q_num_heads and kv_num_heads"
    (_, h, _, d), (_, hkv, _, dk) = _layout(graph, op, 0, "q_num_heads"), _layout(graph, op, 1, "kv_num_heads")
    _, hv, _, dv = _layout(graph, op, 2, "kv_num_heads")
    if h % hkv or hv != hkv or d != dk or dv != d:
        return (
            f"Attention with {h} query heads over {hkv} KV heads, dims {d}/{dk}/{dv}: the NPU kernel needs GQA groups"
        )
    return None


def _to_heads(graph: ir.Graph, op: ir.Op, index: int, layout: tuple[int, int, int, int]) -> list[dict]:
    if len(tensor(graph, op.inputs[index]).shape) == 4:
        return []
    b, h, s, d = layout
    return [{"reshape": [b, s, h, d]}, {"transpose": [0, 2, 1, 3]}]


@lowers("Attention", check=all_of(float_reason, check_attention))
def lower_attention(b: ProgramBuilder, graph: ir.Graph, op: ir.Op) -> None:
    q_layout = _layout(graph, op, 0, "q_num_heads")
    k_layout = _layout(graph, op, 1, "kv_num_heads")
    batch, heads, sq, dim = q_layout
    hkv, skv = k_layout[1], k_layout[2]
    padded = ATTENTION.padded((batch, heads, hkv, sq, skv, dim))
    _, _, _, sqp, skvp, dp = padded
    operands = [
        operand(graph, op.inputs[i], _to_heads(graph, op, i, layout), layout)
        for i, layout in ((0, q_layout), (1, k_layout), (2, _layout(graph, op, 2, "kv_num_heads")))
    ]
    buffers = [
        Buffer("Q", "bfloat16", (batch, heads, sqp, dp)),
        Buffer("K", "bfloat16", (batch, hkv, skvp, dp)),
        Buffer("V", "bfloat16", (batch, hkv, skvp, dp)),
        Buffer("O", "bfloat16", (batch, heads, sqp, dp)),
    ]
    y = tensor(graph, op.outputs[0])
    back = [] if len(y.shape) == 4 else [{"transpose": [0, 2, 1, 3]}, {"reshape": list(y.shape)}]
    causal = bool(int(op.attrs.get("is_causal", 0)))
    extra = {
        "dtype": "bf16",
        "out_dtype": "bfloat16",
        "causal": causal,
        "scale": float(op.attrs.get("scale", 1.0 / math.sqrt(dim))),
        "sizes": {"sq": sq, "skv": skv},
    }
    out = {"tensor": y.name, "shape": [batch, heads, sq, dim], "transforms": back}
    b.add_step(
        op, ATTENTION, padded, buffers, operands, out, "flash-attention", f"bf16_d{dp}", "causal" * causal, extra
    )
