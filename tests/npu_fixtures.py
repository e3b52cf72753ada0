"""Tiny ONNX models built in code for the NPU tests, their ragc.ir view (the front end's to_ir), onnxruntime
references, and NPU partitions written as the bundle writer would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from codegen import npu
from ragc import ir
from ragc.bundle.single import single_partition
from ragc.costmodel.npu import XdnaTiming
from ragc.frontend.to_ir import to_ir  # noqa: F401 - re-exported for the NPU tests
from runtime_min.manifest import Bundle, Partition

OPSET = 24  # Swish needs 24, Gelu 20


def make_model(
    nodes: list[onnx.NodeProto],
    inputs: dict[str, tuple[int, ...]],
    consts: dict[str, np.ndarray],
    outputs: list[str],
    input_dtype: int = onnx.TensorProto.FLOAT,
) -> onnx.ModelProto:
    """A model with shapes inferred: inputs of `input_dtype`; `consts` become initializers (float32 unless they are
    integer arrays)."""

    def constant(value) -> np.ndarray:
        array = np.asarray(value)
        return array if array.dtype.kind in "iub" else array.astype(np.float32)

    graph = helper.make_graph(
        nodes,
        "npu_test",
        [helper.make_tensor_value_info(n, input_dtype, list(s)) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in outputs],
        [numpy_helper.from_array(constant(v), n) for n, v in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=10)
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def write_bundle(
    graph: ir.Graph, bundle_dir: Path, pid: str = "p1", target_npu: dict[str, Any] | None = None
) -> tuple[Partition, Bundle]:
    """Emit the whole graph as one NPU partition into `bundle_dir`; the partition and bundle a backend prepares."""
    return single_partition(npu.emit(graph, pid, XdnaTiming.from_params(target_npu)), graph, bundle_dir, "npu", pid)


def assert_close_bf16(actual: np.ndarray, expected: np.ndarray) -> None:
    """The NPU tolerance: bf16 operands (8-bit mantissa, relative step 2^-8 = 0.39%) with fp32 accumulation.
    |actual - expected| <= 2e-2 * |expected| + 1e-2 * max|expected| (atol relative to the output's scale)."""
    scale = float(np.max(np.abs(expected))) or 1.0
    np.testing.assert_allclose(actual, expected, rtol=2e-2, atol=1e-2 * scale)
