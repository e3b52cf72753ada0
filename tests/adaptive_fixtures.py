"""Adaptive-bundle fixtures: a small MatMul chain the HX 370 target places on its GPU, compiled with variants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

TARGET = "ryzen-ai-9-hx-370"


def matmul_chain(path: Path, width: int = 256, rows: int = 64, layers: int = 3) -> Path:
    """x[rows, width] through `layers` of MatMul + Relu with seeded weights, saved at `path`."""
    rng = np.random.default_rng(0)
    nodes, inits, name = [], [], "x"
    for i in range(layers):
        w = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes += [helper.make_node("MatMul", [name, f"w{i}"], [f"m{i}"], name=f"mm{i}")]
        nodes += [helper.make_node("Relu", [f"m{i}"], [f"r{i}"], name=f"relu{i}")]
        name = f"r{i}"
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, width])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [rows, width])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return path
