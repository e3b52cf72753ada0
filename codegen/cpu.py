"""The CPU emitter: a partition becomes a standalone ONNX model that onnxruntime runs."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from codegen.artifact import Artifact
from ragc import ir


def partition_model(model: onnx.ModelProto, sub: ir.Graph, name: str) -> onnx.ModelProto:
    """The nodes of `sub`, taken from the cleaned model, with exactly the weights they read."""
    nodes_by_name = {node.name: node for node in model.graph.node}
    nodes = [nodes_by_name[op.name] for op in sub.ops]
    weights = [
        numpy_helper.from_array(t.data, t.name)
        for n, t in sorted(sub.tensors.items())
        if t.is_constant and any(n in op.inputs for op in sub.ops)
    ]
    graph = helper.make_graph(
        nodes,
        name,
        inputs=[_value_info(sub.tensors[n]) for n in sub.inputs],
        outputs=[_value_info(sub.tensors[n]) for n in sub.outputs],
        initializer=weights,
    )
    out = helper.make_model(graph, opset_imports=list(model.opset_import), producer_name="ragc")
    out.ir_version = helper.find_min_ir_version_for(list(model.opset_import))  # oldest IR that holds it
    return out


def emit(model: onnx.ModelProto, sub: ir.Graph, partition_id: str) -> Artifact:
    file_name = f"{partition_id}.cpu.onnx"
    data = partition_model(model, sub, partition_id).SerializeToString(deterministic=True)
    return Artifact(format="onnx", files={file_name: data}, meta={"model": file_name})


def _value_info(tensor: ir.Tensor) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(
        tensor.name, helper.np_dtype_to_tensor_dtype(np.dtype(tensor.dtype)), tensor.shape
    )
