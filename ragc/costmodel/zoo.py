"""The evaluation model set: the onnx package's light zoo plus transformer blocks and small CNNs built here."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ragc.ir import Graph
from ragc.personality.errors import PersonalityError


class _Builder:
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
    b, dh = _Builder(seq * dim + blocks), dim // heads
    x = "x"
    for _ in range(blocks):
        h = b.one("LayerNormalization", [x, b.weight((dim,), 1.0), b.weight((dim,))], axis=-1)
        qkv = b.one("Add", [b.one("MatMul", [h, b.weight((dim, 3 * dim))]), b.weight((3 * dim,))])
        q, k, v = b.op("Split", [qkv], n_out=3, axis=-1)
        split = b.ints([1, seq, heads, dh])
        q, v = (b.one("Transpose", [b.one("Reshape", [t, split])], perm=[0, 2, 1, 3]) for t in (q, v))
        k = b.one("Transpose", [b.one("Reshape", [k, split])], perm=[0, 2, 3, 1])
        scores = b.one("Mul", [b.one("MatMul", [q, k]), b.scalar(1.0 / dh**0.5)])
        attn = b.one("MatMul", [b.one("Softmax", [scores], axis=-1), v])
        merged = b.one("Reshape", [b.one("Transpose", [attn], perm=[0, 2, 1, 3]), b.ints([1, seq, dim])])
        x = b.one("Add", [x, b.one("Add", [b.one("MatMul", [merged, b.weight((dim, dim))]), b.weight((dim,))])])
        h = b.one("LayerNormalization", [x, b.weight((dim,), 1.0), b.weight((dim,))], axis=-1)
        up = b.one("Add", [b.one("MatMul", [h, b.weight((dim, 4 * dim))]), b.weight((4 * dim,))])
        erf = b.one("Erf", [b.one("Mul", [up, b.scalar(2**-0.5)])])
        gelu = b.one("Mul", [b.one("Mul", [up, b.one("Add", [erf, b.scalar(1.0)])]), b.scalar(0.5)])
        x = b.one("Add", [x, b.one("Add", [b.one("MatMul", [gelu, b.weight((4 * dim, dim))]), b.weight((dim,))])])
    return b.model(f"transformer_s{seq}_d{dim}", "x", [1, seq, dim], x, [1, seq, dim])


def small_cnn(size: int, widths: list[int], depthwise: bool) -> onnx.ModelProto:
    """A stem conv then stages of (depthwise-separable with ReLU6, or plain 3x3 with ReLU) convs, halving the
    resolution per stage, then global pooling and a classifier."""
    b = _Builder(size + sum(widths))
    x, c = "x", 3
    for i, width in enumerate(widths):
        stride = 2
        if depthwise and i:
            dw = b.one("Conv", [x, b.weight((c, 1, 3, 3)), b.weight((c,))], group=c, pads=[1] * 4, strides=[stride] * 2)
            x = b.one("Clip", [dw, b.scalar(0.0), b.scalar(6.0)])
            x = b.one(
                "Clip",
                [b.one("Conv", [x, b.weight((width, c, 1, 1)), b.weight((width,))]), b.scalar(0.0), b.scalar(6.0)],
            )
        else:
            x = b.one(
                "Relu",
                [
                    b.one(
                        "Conv", [x, b.weight((width, c, 3, 3)), b.weight((width,))], pads=[1] * 4, strides=[stride] * 2
                    )
                ],
            )
            x = b.one("Relu", [b.one("Conv", [x, b.weight((width, width, 3, 3)), b.weight((width,))], pads=[1] * 4)])
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


def generated_models() -> dict[str, onnx.ModelProto]:
    return {
        "transformer_s128_d256": transformer(128, 256, 4, 2),
        "transformer_s64_d512": transformer(64, 512, 8, 2),
        "vit_s197_d384": transformer(197, 384, 6, 1),
        "cnn_dw_160": small_cnn(160, [32, 64, 128, 256, 512], depthwise=True),
        "cnn_plain_96": small_cnn(96, [32, 64, 128], depthwise=False),
        "cnn_dw_224": small_cnn(224, [16, 32, 64, 96, 160], depthwise=True),
    }


def light_zoo_paths() -> dict[str, Path]:
    light = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    return {p.stem.removeprefix("light_"): p for p in sorted(light.glob("light_*.onnx"))}


def model_set(names: list[str] | None = None) -> dict[str, Graph]:
    """Name -> ir.Graph (through ragc's front end) of every evaluation model, or of those named."""
    from ragc.frontend import load_model

    paths = light_zoo_paths()
    generated = generated_models()
    known = [*paths, *generated]
    chosen = names or known
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise PersonalityError(f"unknown eval model(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    graphs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in chosen:
            path = paths.get(name)
            if path is None:
                path = Path(tmp) / f"{name}.onnx"
                onnx.save(generated[name], path)
            graphs[name] = load_model(path).graph
    return graphs
