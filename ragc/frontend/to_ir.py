"""View a cleaned, shape-inferred ONNX model as a ragc.ir.Graph."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ragc import ir
from ragc.errors import ModelError, ShapeError


def to_ir(model: onnx.ModelProto) -> ir.Graph:
    g = model.graph
    tensors: dict[str, ir.Tensor] = {}
    for vi in [*g.input, *g.value_info, *g.output]:
        tensors[vi.name] = _tensor_from_value_info(vi)
    for init in g.initializer:
        data = numpy_helper.to_array(init)
        tensors[init.name] = ir.Tensor(init.name, tuple(int(d) for d in data.shape), data.dtype.name, data)
    ops = []
    for node in g.node:
        for name in [*node.input, *node.output]:
            if name and name not in tensors:
                raise ShapeError(
                    f"tensor {name!r} of node {node.name!r} ({node.op_type}) has no inferred shape; "
                    "give all input shapes with --shape"
                )
        ops.append(ir.Op(node.name, node.op_type, list(node.input), list(node.output), _attrs(node)))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    weights = {init.name for init in g.initializer}
    return ir.Graph(
        ops=ops,
        tensors=tensors,
        inputs=[vi.name for vi in g.input if vi.name not in weights],
        outputs=[vi.name for vi in g.output],
        opset=opset,
    )


def _tensor_from_value_info(vi: onnx.ValueInfoProto) -> ir.Tensor:
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type") or not tt.HasField("shape"):
        raise ShapeError(f"tensor {vi.name!r} has no static shape after inference; give input shapes with --shape")
    dims = []
    for d in tt.shape.dim:
        if not d.HasField("dim_value"):
            raise ShapeError(
                f"tensor {vi.name!r} has a data-dependent dimension ({d.dim_param or '?'}); "
                "ragc needs static shapes: fix them with --shape or simplify the model"
            )
        dims.append(int(d.dim_value))
    return ir.Tensor(vi.name, tuple(dims), np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)).name)


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for attr in node.attribute:
        if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            raise ModelError(
                f"control-flow operator {node.op_type!r} (node {node.name!r}) is not supported; "
                "unroll or remove it before compiling"
            )
        value = helper.get_attribute_value(attr)
        if isinstance(value, onnx.TensorProto):
            value = numpy_helper.to_array(value)
        elif isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, list) and value and isinstance(value[0], bytes):
            value = [v.decode() for v in value]
        attrs[attr.name] = value
    return attrs
