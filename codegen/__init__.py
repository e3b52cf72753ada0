"""ragc's code generators, one per processor behind one registry: the CPU's ONNX partitions, the GPU's SPIR-V
kernels from GLSL templates, the NPU's xclbin references. Every emitter puts its constants into the bundle's
tensor store."""

from __future__ import annotations

import importlib
from typing import Any

from codegen.artifact import Artifact, TensorStore

EMITTERS = {"cpu": "codegen.cpu", "gpu": "codegen.gpu", "npu": "codegen.npu"}


def emit(
    device: str,
    sub: Any,
    partition_id: str,
    store: TensorStore,
    *,
    model: Any = None,
    npu: Any = None,
    precision: Any = None,
) -> Artifact:
    """The artifact of one partition (`sub`, a ragc.ir.Graph) for `device`; `model` is the cleaned ONNX model the CPU
    emitter copies nodes from, `npu` the compiler's XDNA timing model (ragc.costmodel.npu.XdnaTiming), `precision`
    the GPU's (codegen.gpu.precision.Precision; fp32 when None)."""
    module = importlib.import_module(EMITTERS[device])
    if device == "cpu":
        return module.emit(model, sub, partition_id, store)
    if device == "npu":
        return module.emit(sub, partition_id, npu, store)
    return module.emit(sub, partition_id, store, precision)


def unsupported_reason(graph: Any, op: Any, device: str) -> str | None:
    """None when `device` can run `op` (the CPU runs every standard op through onnxruntime), else why not."""
    if device == "cpu":
        return None
    return importlib.import_module(EMITTERS[device]).unsupported_reason(graph, op)


__all__ = ["EMITTERS", "Artifact", "TensorStore", "emit", "unsupported_reason"]
