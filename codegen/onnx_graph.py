"""An ir.Graph as one ONNX model, as the profiler times it and onnxruntime's optimizer reads it (cpu_kernels)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ragc.ir import Graph


def _attr_value(value: Any) -> Any:
    return numpy_helper.from_array(value) if isinstance(value, np.ndarray) else value


def _value_info(graph: Graph, name: str, with_shape: bool = True) -> onnx.ValueInfoProto:
    t = graph.tensors[name]
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(t.dtype))
    return helper.make_tensor_value_info(name, elem, list(t.shape) if with_shape else None)


def graph_model(graph: Graph, with_output_shapes: bool = True) -> onnx.ModelProto:
    """An ONNX model of an ir.Graph (constants become initializers)."""
    nodes = [
        helper.make_node(
            op.op_type, op.inputs, op.outputs, name=op.name, **{k: _attr_value(v) for k, v in sorted(op.attrs.items())}
        )
        for op in graph.ops
    ]
    used = sorted({n for op in graph.ops for n in op.inputs if n})
    inits = [
        numpy_helper.from_array(np.asarray(graph.tensors[n].data, dtype=graph.tensors[n].dtype), n)
        for n in used
        if graph.tensors[n].is_constant
    ]
    body = helper.make_graph(
        nodes,
        "ragc_bench",
        [_value_info(graph, n) for n in graph.inputs],
        [_value_info(graph, n, with_output_shapes) for n in graph.outputs],
        inits,
    )
    return helper.make_model(body, opset_imports=[helper.make_opsetid("", graph.opset)], ir_version=8)
