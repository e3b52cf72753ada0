"""ONNX models built in code, float32 with seeded random weights: transformer encoder blocks, small CNNs, and random
CNNs whose blocks mix the structures of real networks (residual, inverted bottleneck, grouped convs with a channel
shuffle, parallel branches). The cost model's evaluation set uses the fixed ones; `ragc profile` times random ones
whole, so that the cost model learns what ops cost inside models it will never be evaluated on."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ragc.ir import Graph


class Builder:
    """Appends nodes and seeded random weights to a float32 model under construction."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def _name(self, stem: str) -> str:
        return f"{stem}{len(self.nodes) + len(self.inits)}"

    def weight(self, shape: tuple[int, ...], scale: float = 0.05) -> str:
        name = self._name("w")
        self.inits.append(numpy_helper.from_array(self.rng.normal(0, scale, shape).astype(np.float32), name))
        return name

    def ints(self, values: list[int]) -> str:
        name = self._name("c")
        self.inits.append(numpy_helper.from_array(np.array(values, dtype=np.int64), name))
        return name

    def constant(self, array: np.ndarray) -> str:
        """A float32 initializer holding `array`."""
        name = self._name("k")
        self.inits.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def scalar(self, value: float) -> str:
        name = self._name("s")
        self.inits.append(numpy_helper.from_array(np.array(value, dtype=np.float32), name))
        return name

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, **attrs) -> list[str]:
        outs = [self._name("t") + f"_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, **attrs))
        return outs

    def one(self, op_type: str, inputs: list[str], **attrs) -> str:
        return self.op(op_type, inputs, **attrs)[0]

    def linear(self, x: str, c: int, k: int) -> str:
        """x @ W + b from `c` to `k` features (MatMul then Add, as exporters write a Linear)."""
        return self.one("Add", [self.one("MatMul", [x, self.weight((c, k))]), self.weight((k,))])

    def conv(
        self, x: str, c: int, k: int, kernel: int = 1, stride: int = 1, group: int = 1, act: str = "Relu", pad: int = -1
    ) -> str:
        """A conv with bias from `c` to `k` channels (same-padded unless `pad` says), then ReLU, ReLU6 ("Clip") or
        nothing ("")."""
        w = self.weight((k, c // group, kernel, kernel))
        pads = [kernel // 2 if pad < 0 else pad] * 4
        y = self.one("Conv", [x, w, self.weight((k,))], group=group, pads=pads, strides=[stride] * 2)
        if act == "Relu":
            return self.one("Relu", [y])
        if act == "Clip":
            return self.one("Clip", [y, self.scalar(0.0), self.scalar(6.0)])
        return y

    def model(self, name: str, x: str, shape: list[int], y: str, y_shape: list[int]) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            name,
            [helper.make_tensor_value_info(x, TensorProto.FLOAT, shape)],
            [helper.make_tensor_value_info(y, TensorProto.FLOAT, y_shape)],
            self.inits,
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def transformer(seq: int, dim: int, heads: int, blocks: int) -> onnx.ModelProto:
    """Pre-norm encoder blocks: fused QKV projection, softmax attention, erf-GELU MLP, residuals."""
    b, dh = Builder(seq * dim + blocks), dim // heads
    x = "x"
    for _ in range(blocks):
        h = b.one("LayerNormalization", [x, b.weight((dim,), 1.0), b.weight((dim,))], axis=-1)
        qkv = b.linear(h, dim, 3 * dim)
        q, k, v = b.op("Split", [qkv], n_out=3, axis=-1)
        split = b.ints([1, seq, heads, dh])
        q, v = (b.one("Transpose", [b.one("Reshape", [t, split])], perm=[0, 2, 1, 3]) for t in (q, v))
        k = b.one("Transpose", [b.one("Reshape", [k, split])], perm=[0, 2, 3, 1])
        scores = b.one("Mul", [b.one("MatMul", [q, k]), b.scalar(1.0 / dh**0.5)])
        attn = b.one("MatMul", [b.one("Softmax", [scores], axis=-1), v])
        merged = b.one("Reshape", [b.one("Transpose", [attn], perm=[0, 2, 1, 3]), b.ints([1, seq, dim])])
        x = b.one("Add", [x, b.linear(merged, dim, dim)])
        h = b.one("LayerNormalization", [x, b.weight((dim,), 1.0), b.weight((dim,))], axis=-1)
        up = b.linear(h, dim, 4 * dim)
        erf = b.one("Erf", [b.one("Mul", [up, b.scalar(2**-0.5)])])
        gelu = b.one("Mul", [b.one("Mul", [up, b.one("Add", [erf, b.scalar(1.0)])]), b.scalar(0.5)])
        x = b.one("Add", [x, b.linear(gelu, 4 * dim, dim)])
    return b.model(f"transformer_s{seq}_d{dim}", "x", [1, seq, dim], x, [1, seq, dim])


def small_cnn(size: int, widths: list[int], depthwise: bool) -> onnx.ModelProto:
    """A stem conv then stages of (depthwise-separable with ReLU6, or plain 3x3 with ReLU) convs, halving the
    resolution per stage, then global pooling and a classifier."""
    b = Builder(size + sum(widths))
    x, c = "x", 3
    for i, width in enumerate(widths):
        if depthwise and i:
            x = b.conv(b.conv(x, c, c, 3, 2, group=c, act="Clip"), c, width, act="Clip")
        else:
            x = b.conv(b.conv(x, c, width, 3, 2), width, width, 3)
        c = width
    pooled = b.one("Flatten", [b.one("GlobalAveragePool", [x])])
    logits = b.one("Gemm", [pooled, b.weight((100, c)), b.weight((100,))], transB=1)
    return b.model(
        f"cnn_{size}_{'dw' if depthwise else 'plain'}",
        "x",
        [1, 3, size, size],
        b.one("Softmax", [logits], axis=-1),
        [1, 100],
    )


class _RandomCnn:
    """Builds one random CNN (see random_cnn)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.b = Builder(seed)

    def block(self, x: str, c: int, out: int, stride: int, size: int) -> str:
        kind = self.rng.choice(["plain", "residual", "bottleneck", "shuffle", "branches"])
        if kind == "plain" or (kind == "residual" and (stride != 1 or c != out)):
            return self.b.conv(x, c, out, 3, stride)
        if kind == "residual":
            y = self.b.conv(self.b.conv(x, c, out, 3), out, out, 3, act="")
            return self.b.one("Relu", [self.b.one("Add", [x, y])])
        if kind == "bottleneck":
            wide = c * int(self.rng.choice([2, 4, 6]))
            y = self.b.conv(self.b.conv(x, c, wide, 1, act="Clip"), wide, wide, 3, stride, group=wide, act="Clip")
            y = self.b.conv(y, wide, out, 1, act="")
            return self.b.one("Add", [x, y]) if stride == 1 and c == out else y
        if kind == "shuffle":
            groups = 4 if c % 4 == 0 and out % 4 == 0 else 2
            y = self.b.conv(x, c, out, 1, group=groups if c % groups == 0 else 1)
            y = self.b.one("Reshape", [y, self.b.ints([1, groups, out // groups, size, size])])
            y = self.b.one("Transpose", [y], perm=[0, 2, 1, 3, 4])
            y = self.b.one("Reshape", [y, self.b.ints([1, out, size, size])])
            y = self.b.conv(y, out, out, 3, stride, group=out, act="")
            return self.b.conv(y, out, out, 1, group=groups)
        left = self.b.conv(x, c, out // 2, 1, stride)
        right = self.b.conv(self.b.conv(x, c, out // 4, 1), out // 4, out - out // 2, 3, stride)
        return self.b.one("Concat", [left, right], axis=1)

    def model(self, name: str) -> onnx.ModelProto:
        size = int(self.rng.choice([64, 96, 128, 160, 224]))
        width = int(self.rng.choice([16, 24, 32]))
        x = self.b.conv("x", 3, width, 3, 2)
        c, hw = width, size // 2
        for _ in range(int(self.rng.integers(3, 6))):
            out = int(c * self.rng.choice([1.5, 2.0]))
            out -= out % 4
            for i in range(int(self.rng.integers(1, 4))):
                stride = 2 if i == 0 and hw > 4 else 1
                x = self.block(x, c, out, stride, hw)
                c, hw = out, -(-hw // stride)
        pooled = self.b.one("Flatten", [self.b.one("GlobalAveragePool", [x])])
        logits = self.b.one("Gemm", [pooled, self.b.weight((1000, c)), self.b.weight((1000,))], transB=1)
        return self.b.model(name, "x", [1, 3, size, size], self.b.one("Softmax", [logits], axis=-1), [1, 1000])


def random_cnn(seed: int) -> onnx.ModelProto:
    """A stem conv, then 3 to 5 stages (widths growing 1.5-2x, the first block of each striding by 2) of 1 to 3
    random blocks: plain 3x3 conv, residual pair, inverted bottleneck (1x1 expand, depthwise 3x3, 1x1 project),
    grouped 1x1 convs around a channel shuffle and a depthwise conv, or two concatenated branches; then global
    pooling and a 1000-way classifier. Input size 64 to 224."""
    return _RandomCnn(seed).model(f"random_cnn_{seed}")


def random_transformer(seed: int) -> onnx.ModelProto:
    """Encoder blocks (see transformer) of a random sequence length and width (none the evaluation set uses), 64
    wide heads, and 1 or 2 blocks."""
    rng = np.random.default_rng(seed)
    dim = int(rng.choice([128, 192, 320, 448, 640]))
    return transformer(int(rng.choice([32, 48, 96, 160, 224])), dim, dim // 64, int(rng.integers(1, 3)))


def to_graphs(models: dict[str, onnx.ModelProto]) -> dict[str, Graph]:
    """Name -> ir.Graph of each model, through ragc's front end (as `ragc compile` would see it)."""
    from ragc.frontend import load_model

    graphs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models.items():
            path = Path(tmp) / f"{name}.onnx"
            onnx.save(model, path)
            graphs[name] = load_model(path).graph
    return graphs
