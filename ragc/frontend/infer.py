"""Strict ONNX shape inference over a model, without copying its large weights into the inference call."""

from __future__ import annotations

import onnx
from onnx import helper, shape_inference

from ragc.errors import ShapeError

_INFER_INLINE_BYTES = 64 << 20
_LARGE_WEIGHT_BYTES = 1 << 16


def infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with its value_info and outputs replaced by strict inference's (data propagation on)."""
    light = onnx.ModelProto()
    if model.ByteSize() < _INFER_INLINE_BYTES:
        light.CopyFrom(model)
    else:
        _copy_without_large_weights(model, light)
    try:
        inferred = shape_inference.infer_shapes(light, check_type=True, strict_mode=True, data_prop=True)
    except Exception as exc:  # InferenceError, or a checker error for inconsistent models
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ShapeError(f"shape inference failed: {first}; fix the model or the shapes given with --shape") from None
    del model.graph.value_info[:]
    model.graph.value_info.extend(inferred.graph.value_info)
    del model.graph.output[:]
    model.graph.output.extend(inferred.graph.output)
    return model


def _copy_without_large_weights(model: onnx.ModelProto, light: onnx.ModelProto) -> None:
    light.ir_version = model.ir_version
    light.opset_import.extend(model.opset_import)
    light.graph.name = model.graph.name
    light.graph.node.extend(model.graph.node)
    light.graph.input.extend(model.graph.input)
    light.graph.output.extend(model.graph.output)
    for init in model.graph.initializer:
        if len(init.raw_data) > _LARGE_WEIGHT_BYTES:
            light.graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
        else:
            light.graph.initializer.append(init)
