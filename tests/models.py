"""Tiny ONNX models built in code for the tests."""

from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

LIGHT_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
LIGHT_MODELS = sorted(f[len("light_") : -len(".onnx")] for f in os.listdir(LIGHT_DIR) if f.endswith(".onnx"))


def light_model(name: str) -> str:
    return os.path.join(LIGHT_DIR, f"light_{name}.onnx")


def light_input(model_path: str) -> dict[str, np.ndarray]:
    """The input the onnx backend test runner uses for light models: arange / n, reshaped."""
    model = onnx.load(model_path, load_external_data=False)
    weights = {init.name for init in model.graph.initializer}
    feeds = {}
    for vi in model.graph.input:
        if vi.name not in weights:
            shape = tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
            n = int(np.prod(shape))
            feeds[vi.name] = (np.arange(n).reshape(shape) / n).astype(np.float32)
    return feeds


def light_expected(name: str) -> np.ndarray:
    return numpy_helper.to_array(onnx.load_tensor(os.path.join(LIGHT_DIR, f"light_{name}_output_0.pb")))


def _weight(rng: np.random.Generator, name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3, name)


def conv_bn_relu_model(opset: int = 17, batch: int | str = 1) -> onnx.ModelProto:
    """x -> Conv -> BatchNormalization -> Relu -> Conv(+bias) -> Add(skip) -> GlobalAveragePool -> Flatten -> Gemm."""
    rng = np.random.default_rng(0)
    inits = [
        _weight(rng, "w1", 8, 3, 3, 3),
        numpy_helper.from_array(rng.random(8).astype(np.float32) + 0.5, "bn_scale"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "bn_bias"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "bn_mean"),
        numpy_helper.from_array(rng.random(8).astype(np.float32) + 0.5, "bn_var"),
        _weight(rng, "w2", 8, 8, 3, 3),
        _weight(rng, "b2", 8),
        _weight(rng, "fc_w", 8, 10),
        _weight(rng, "fc_b", 10),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["bn"], name="bn1"),
        helper.make_node("Relu", ["bn"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "r1"], ["s"], name="add"),
        helper.make_node("GlobalAveragePool", ["s"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_bn_relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 10])],
        inits,
    )
    return _model(graph, opset)


def _model(graph: onnx.GraphProto, opset: int = 17) -> onnx.ModelProto:
    """IR version 8: what onnxruntime reads (make_model's default can be newer than it supports)."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def two_input_model() -> onnx.ModelProto:
    """Two inputs, two branches, two outputs: a = relu(x) * 2, b = sigmoid(y) + a."""
    nodes = [
        helper.make_node("Relu", ["x"], ["rx"], name="relu"),
        helper.make_node("Mul", ["rx", "two"], ["a"], name="mul"),
        helper.make_node("Sigmoid", ["y"], ["sy"], name="sigmoid"),
        helper.make_node("Add", ["sy", "a"], ["b"], name="add"),
    ]
    graph = helper.make_graph(
        nodes,
        "two_inputs",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5]),
        ],
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 5]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [2, 5]),
        ],
        [numpy_helper.from_array(np.array(2.0, np.float32), "two")],
    )
    return _model(graph)


def save(model: onnx.ModelProto, path) -> str:
    onnx.save(model, str(path))
    return str(path)
