"""The CPU emitter: a partition becomes a standalone ONNX model that onnxruntime runs; weights of EXTERNAL_MIN_BYTES
or more live in the bundle's tensor store as ONNX external data (location tensors.bin, offset, length)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from codegen.artifact import Artifact, TensorStore
from ragc import ir
from runtime_min.format import ARTIFACT_FORMATS, TENSOR_STORE

EXTERNAL_MIN_BYTES = 1024  # smaller constants stay inside the ONNX file


def partition_model(model: onnx.ModelProto, sub: ir.Graph, name: str, store: TensorStore | None) -> onnx.ModelProto:
    """The nodes of `sub`, taken from the cleaned model, with exactly the weights they read (in `store` when given)."""
    nodes_by_name = {node.name: node for node in model.graph.node}
    nodes = [nodes_by_name[op.name] for op in sub.ops]
    weights = [
        _weight(t, store)
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


def _weight(t: ir.Tensor, store: TensorStore | None) -> onnx.TensorProto:
    proto = numpy_helper.from_array(t.data, t.name)
    if store is None or t.nbytes < EXTERNAL_MIN_BYTES or not proto.HasField("raw_data"):
        return proto
    data = np.ascontiguousarray(t.data).astype(t.data.dtype.newbyteorder("<"), copy=False)
    offset = store.add(data)
    proto.ClearField("raw_data")
    proto.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", TENSOR_STORE), ("offset", str(offset)), ("length", str(data.nbytes))):
        entry = proto.external_data.add()
        entry.key, entry.value = key, value
    return proto


def emit(model: onnx.ModelProto, sub: ir.Graph, partition_id: str, store: TensorStore | None = None) -> Artifact:
    """The partition as `<pid>.cpu.onnx`; with `store`, its large weights go there as external data."""
    file_name = f"{partition_id}.cpu.onnx"
    data = partition_model(model, sub, partition_id, store).SerializeToString(deterministic=True)
    return Artifact(format=ARTIFACT_FORMATS["cpu"], files={file_name: data}, meta={"model": file_name}, store=store)


def _value_info(tensor: ir.Tensor) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(
        tensor.name, helper.np_dtype_to_tensor_dtype(np.dtype(tensor.dtype)), tensor.shape
    )
