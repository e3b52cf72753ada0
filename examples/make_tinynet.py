"""Build examples/tinynet.onnx: a small MobileNet-style classifier (seeded random weights, opset 17).

Run `python examples/make_tinynet.py` to regenerate; the result is byte-identical every time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class _Builder:
    def __init__(self, seed: int = 7) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.weights: list[onnx.TensorProto] = []

    def weight(self, name: str, *shape: int, scale: float = 1.0) -> str:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        data = (self.rng.standard_normal(shape) * scale / np.sqrt(fan_in)).astype(np.float32)
        self.weights.append(numpy_helper.from_array(data, name))
        return name

    def node(self, op: str, inputs: list[str], name: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def conv_bn_relu(self, x: str, name: str, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> str:
        w = self.weight(f"{name}.w", cout, cin // groups, k, k, scale=1.4)
        y = self.node("Conv", [x, w], f"{name}.conv", pads=[k // 2] * 4, strides=[stride] * 2, group=groups)
        stats = [np.abs(self.rng.standard_normal(cout)) * 0.2 + 0.9, self.rng.standard_normal(cout) * 0.1]
        stats += [self.rng.standard_normal(cout) * 0.1, np.abs(self.rng.standard_normal(cout)) * 0.2 + 0.9]
        names = [f"{name}.bn.{s}" for s in ("scale", "bias", "mean", "var")]
        self.weights += [numpy_helper.from_array(s.astype(np.float32), n) for n, s in zip(names, stats, strict=True)]
        y = self.node("BatchNormalization", [y, *names], f"{name}.bn")
        return self.node("Relu", [y], f"{name}.relu")


def build() -> onnx.ModelProto:
    b = _Builder()
    x = b.conv_bn_relu("image", "stem", 3, 16, 3, stride=2)
    channels = 16
    for i, (cout, stride) in enumerate([(24, 2), (24, 1), (48, 2), (48, 1), (96, 2)]):
        dw = b.conv_bn_relu(x, f"b{i}.dw", channels, channels, 3, stride=stride, groups=channels)
        pw = b.conv_bn_relu(dw, f"b{i}.pw", channels, cout, 1)
        x = b.node("Add", [pw, x], f"b{i}.add") if stride == 1 and cout == channels else pw
        channels = cout
    pooled = b.node("GlobalAveragePool", [x], "pool")
    flat = b.node("Flatten", [pooled], "flatten")
    logits = b.node("Gemm", [flat, b.weight("fc.w", 10, channels), b.weight("fc.b", 10)], "fc", transB=1)
    b.node("Softmax", [logits], "probs", axis=1)
    graph = helper.make_graph(
        b.nodes,
        "tinynet",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 96, 96])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 10])],
        b.weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="ragc-examples")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    out = Path(__file__).with_name("tinynet.onnx")
    onnx.save(build(), str(out))
    print(f"wrote {out}")
