"""NPU workloads as ONNX models built in code (onnx.helper, seeded random weights, opset 23), for bench/npu,
`ragc selftest` and the tests: square GEMMs (bf16 as float32 MatMul, int8 as QLinearMatMul), Llama-3.2-1B-shaped
prefill and decoder stacks, BERT-base, MobileNetV2, and one LM-head partition. Transformer layers share one set of
weights (the same initializers), so a 16-layer model is one layer's weights on disk; shapes, and so every
simulated time, are those of the real model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ragc.profiler.modelgen import Builder

OPSET = 23
LLAMA_1B = {"dim": 2048, "heads": 32, "kv_heads": 8, "hidden": 8192, "layers": 16, "vocab": 128256}


class _Graph(Builder):
    """modelgen's Builder with float inputs of any shape and an opset-23 model."""

    def const(self, array: np.ndarray) -> str:
        name = self._name("k")
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def finish(
        self, name: str, inputs: dict[str, tuple[tuple[int, ...], int]], output: str, dtype: int = TensorProto.FLOAT
    ) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            name,
            [helper.make_tensor_value_info(n, t, list(shape)) for n, (shape, t) in inputs.items()],
            [helper.make_tensor_value_info(output, dtype, None)],
            self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=10)
        return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def gemm(size: int, dtype: str) -> onnx.ModelProto:
    """y = x @ W for square `size`: bf16 (float32 MatMul, computed in bf16) or int8 (QLinearMatMul, int8 out)."""
    b = _Graph(size)
    if dtype == "bf16":
        y = b.one("MatMul", ["x", b.weight((size, size), 0.02)])
        return b.finish(f"gemm_bf16_{size}", {"x": ((size, size), TensorProto.FLOAT)}, y)
    w = b.const(b.rng.integers(-64, 64, (size, size)).astype(np.int8))
    s, z = b.const(np.float32(0.01)), b.const(np.int8(0))
    y = b.one("QLinearMatMul", ["x", s, z, w, s, z, b.const(np.float32(0.5)), z])
    return b.finish(f"gemm_int8_{size}", {"x": ((size, size), TensorProto.INT8)}, y, TensorProto.INT8)


def _rope(b: _Graph, t: str, seq: int, heads: int, dh: int, cos: str, sin: str, rotate: str) -> str:
    """t * cos + rotate_half(t) * sin per head, rotate_half as a [dh, dh] signed permutation (one GEMM)."""
    rows = b.one("Reshape", [t, b.ints([seq * heads, dh])])
    turned = b.one("MatMul", [rows, rotate])
    mixed = b.one("Add", [b.one("Mul", [rows, cos]), b.one("Mul", [turned, sin])])
    return b.one("Reshape", [mixed, b.ints([1, seq, heads * dh])])


def _rope_tables(b: _Graph, seq: int, heads: int, dh: int) -> tuple[str, str, str]:
    half = dh // 2
    angles = np.arange(seq)[:, None] / 500000.0 ** (np.arange(half)[None, :] / half)
    cos = np.repeat(np.tile(np.cos(angles), 2), heads, axis=0).astype(np.float32)
    sin = np.repeat(np.tile(np.sin(angles), 2), heads, axis=0).astype(np.float32)
    rotate = np.zeros((dh, dh), np.float32)
    rotate[half:, :half] = -np.eye(half)
    rotate[:half, half:] = np.eye(half)
    return b.const(cos), b.const(sin), b.const(rotate)


def llama(seq: int, layers: int, dims: dict[str, int] = LLAMA_1B) -> onnx.ModelProto:
    """Pre-norm decoder layers: RMSNorm, Q/K/V projections, RoPE, causal grouped-query Attention, O projection
    and residual, RMSNorm, SwiGLU MLP and residual; then the final RMSNorm. Input: hidden states [1, seq, dim]."""
    b = _Graph(seq + layers)
    dim, heads, kv, hidden = dims["dim"], dims["heads"], dims["kv_heads"], dims["hidden"]
    dh = dim // heads
    w = {
        "norm1": b.weight((dim,), 1.0),
        "q": b.weight((dim, dim), 0.02),
        "k": b.weight((dim, kv * dh), 0.02),
        "v": b.weight((dim, kv * dh), 0.02),
        "o": b.weight((dim, dim), 0.02),
        "norm2": b.weight((dim,), 1.0),
        "gate": b.weight((dim, hidden), 0.02),
        "up": b.weight((dim, hidden), 0.02),
        "down": b.weight((hidden, dim), 0.02),
    }
    q_rope, k_rope = _rope_tables(b, seq, heads, dh), _rope_tables(b, seq, kv, dh)
    x = "x"
    for _ in range(layers):
        h = b.one("RMSNormalization", [x, w["norm1"]], axis=-1, epsilon=1e-5)
        q = _rope(b, b.one("MatMul", [h, w["q"]]), seq, heads, dh, *q_rope)
        k = _rope(b, b.one("MatMul", [h, w["k"]]), seq, kv, dh, *k_rope)
        v = b.one("MatMul", [h, w["v"]])
        attn = b.one("Attention", [q, k, v], is_causal=1, q_num_heads=heads, kv_num_heads=kv)
        x = b.one("Add", [b.one("MatMul", [attn, w["o"]]), x])
        h = b.one("RMSNormalization", [x, w["norm2"]], axis=-1, epsilon=1e-5)
        gate = b.one("MatMul", [h, w["gate"]])
        gate = b.one("Mul", [gate, b.one("Sigmoid", [gate])])  # SiLU, as exported before opset 24's Swish
        up = b.one("Mul", [gate, b.one("MatMul", [h, w["up"]])])
        x = b.one("Add", [b.one("MatMul", [up, w["down"]]), x])
    y = b.one("RMSNormalization", [x, b.weight((dim,), 1.0)], axis=-1, epsilon=1e-5)
    return b.finish(f"llama_s{seq}_l{layers}", {"x": ((1, seq, dim), TensorProto.FLOAT)}, y)


def lm_head_slice(dim: int = 2048, vocab: int = LLAMA_1B["vocab"], parts: int = 8) -> onnx.ModelProto:
    """One of the `parts` vocabulary slices of the last token's LM head: [1, dim] @ [dim, vocab / parts]."""
    b = _Graph(dim)
    y = b.one("MatMul", ["x", b.weight((dim, math.ceil(vocab / parts)), 0.02)])
    return b.finish("lm_head_slice", {"x": ((1, dim), TensorProto.FLOAT)}, y)


def bert_base(seq: int = 128, dim: int = 768, heads: int = 12, layers: int = 12) -> onnx.ModelProto:
    """Post-norm BERT encoder layers: Q/K/V projections with bias, Attention, O projection with bias and residual,
    LayerNorm, GELU MLP with biases and residual, LayerNorm. Input: embeddings [1, seq, dim]."""
    b = _Graph(seq + layers)
    w = {n: b.weight((dim, dim), 0.02) for n in ("q", "k", "v", "o")}
    w.update(up=b.weight((dim, 4 * dim), 0.02), down=b.weight((4 * dim, dim), 0.02))
    bias = {n: b.weight((dim,)) for n in ("q", "k", "v", "o", "down")}
    bias["up"] = b.weight((4 * dim,))
    norms = [(b.weight((dim,), 1.0), b.weight((dim,))) for _ in range(2)]
    x = "x"

    def linear(t: str, name: str) -> str:
        return b.one("Add", [b.one("MatMul", [t, w[name]]), bias[name]])

    for _ in range(layers):
        q, k, v = (linear(x, n) for n in "qkv")
        attn = b.one("Attention", [q, k, v], q_num_heads=heads, kv_num_heads=heads)
        x = b.one("LayerNormalization", [b.one("Add", [linear(attn, "o"), x]), *norms[0]], axis=-1)
        up = b.one("Gelu", [linear(x, "up")])
        x = b.one("LayerNormalization", [b.one("Add", [linear(up, "down"), x]), *norms[1]], axis=-1)
    return b.finish(f"bert_base_s{seq}", {"x": ((1, seq, dim), TensorProto.FLOAT)}, x)


# MobileNetV2 (Sandler et al. 2018, table 2): expansion t, channels c, repeats n, first stride s
MOBILENET_V2 = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def mobilenet_v2(size: int = 224) -> onnx.ModelProto:
    """MobileNetV2 at 224x224 with BatchNorm folded into the convs: stem, inverted residual blocks (1x1 expand,
    3x3 depthwise, 1x1 project, ReLU6), 1x1 to 1280, global pooling, classifier."""
    b = _Graph(size)
    x, c = b.conv("x", 3, 32, 3, 2, act="Clip"), 32
    for t, out, repeats, stride in MOBILENET_V2:
        for i in range(repeats):
            h = b.conv(x, c, c * t, act="Clip") if t != 1 else x
            h = b.conv(h, c * t, c * t, 3, stride if i == 0 else 1, group=c * t, act="Clip")
            h = b.conv(h, c * t, out, act="")
            x = b.one("Add", [h, x]) if (i > 0 or stride == 1) and c == out else h
            c = out
    x = b.conv(x, c, 1280, act="Clip")
    pooled = b.one("Flatten", [b.one("GlobalAveragePool", [x])])
    logits = b.one("Gemm", [pooled, b.weight((1000, 1280)), b.weight((1000,))], transB=1)
    return b.finish("mobilenet_v2", {"x": ((1, 3, size, size), TensorProto.FLOAT)}, logits)


def save(model: onnx.ModelProto, path: Path) -> Path:
    """Write `model` (checked) to `path`, weights inline."""
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
