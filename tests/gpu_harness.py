"""Test helpers for GPU kernels: build a tiny ragc.ir graph, run it through emit + VulkanBackend and onnxruntime."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from codegen.artifact import Artifact
from codegen.gpu import emit
from ragc.bundle.single import single_partition
from ragc.ir import Graph, Op, Tensor
from runtime_min.errors import BackendUnavailable
from runtime_min.options import LoadOptions

OPSET = 20


class Builder:
    """Collects tensors and ops of a test graph; `graph()` returns the ragc.ir.Graph."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.tensors: dict[str, Tensor] = {}
        self.ops: list[Op] = []
        self.inputs: list[str] = []

    def input(self, name: str, shape: tuple[int, ...], dtype: str = "float32") -> str:
        self.tensors[name] = Tensor(name, tuple(shape), dtype)
        self.inputs.append(name)
        return name

    def const(self, name: str, data: Any, dtype: str | None = None) -> str:
        arr = np.asarray(data, dtype=dtype)
        self.tensors[name] = Tensor(name, arr.shape, str(arr.dtype), arr)
        return name

    def weight(self, name: str, shape: tuple[int, ...], scale: float = 1.0) -> str:
        return self.const(name, (self.rng.standard_normal(shape) * scale).astype(np.float32))

    def op(self, op_type: str, inputs: list[str], shape: tuple[int, ...], dtype: str = "float32", **attrs: Any) -> str:
        return self.op_outputs(op_type, inputs, [shape], dtype, **attrs)[0]

    def op_outputs(
        self, op_type: str, inputs: list[str], shapes: list[tuple[int, ...]], dtype: str = "float32", **attrs: Any
    ) -> list[str]:
        """An op with one output per shape (Split)."""
        outs = [f"t{len(self.ops)}" + (f"_{k}" if k else "") for k in range(len(shapes))]
        for out, shape in zip(outs, shapes, strict=True):
            self.tensors[out] = Tensor(out, tuple(shape), dtype)
        self.ops.append(Op(f"n{len(self.ops)}_{op_type}", op_type, list(inputs), outs, attrs))
        return outs

    def graph(self, outputs: list[str]) -> Graph:
        return Graph(
            ops=list(self.ops), tensors=dict(self.tensors), inputs=list(self.inputs), outputs=outputs, opset=OPSET
        )


def to_onnx(graph: Graph) -> onnx.ModelProto:
    def info(name: str) -> onnx.ValueInfoProto:
        t = graph.tensors[name]
        return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(t.dtype)), t.shape)

    nodes = [helper.make_node(op.op_type, op.inputs, op.outputs, name=op.name, **op.attrs) for op in graph.ops]
    inits = [numpy_helper.from_array(t.data, n) for n, t in graph.tensors.items() if t.is_constant]
    g = helper.make_graph(nodes, "t", [info(n) for n in graph.inputs], [info(n) for n in graph.outputs], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", graph.opset)], ir_version=9)


def reference(graph: Graph, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """onnxruntime's outputs for the graph (CPU, no graph optimisation)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(to_onnx(graph).SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return dict(zip(graph.outputs, sess.run(graph.outputs, feeds), strict=True))


def prepare(be: Any, artifact: Artifact, graph: Graph, folder: Path) -> Any:
    """The artifact as a one-partition bundle in `folder`, prepared on backend `be`."""
    return be.prepare(*single_partition(artifact, graph, folder, "gpu"))


def backend(options: dict[str, Any] | None = None) -> Any:
    from runtime_min.backends.vulkan import VulkanBackend

    try:
        return VulkanBackend(LoadOptions.make(options or {}))
    except BackendUnavailable as exc:
        pytest.skip(f"no Vulkan device: {exc}")


def run_gpu(graph: Graph, feeds: dict[str, np.ndarray], be: Any) -> dict[str, np.ndarray]:
    """Emit the graph as one GPU partition, prepare it on `be` and run it once."""
    artifact = emit(graph, "p1")
    with tempfile.TemporaryDirectory() as tmp:
        exe = prepare(be, artifact, graph, Path(tmp))
    try:
        return exe.run(feeds)
    finally:
        exe.close()


def templates(graph: Graph) -> list[str]:
    """The kernel template of each dispatch the graph lowers to, without ".comp.j2"."""
    from codegen.gpu import lower

    return [s.dispatch.template.removesuffix(".comp.j2") for s in lower(graph)[1]]


def random_feeds(graph: Graph, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for name in graph.inputs:
        t = graph.tensors[name]
        if t.dtype == "bool":
            feeds[name] = rng.random(t.shape) < 0.5
        else:
            feeds[name] = rng.standard_normal(t.shape).astype(t.dtype)
    return feeds


def check(
    graph: Graph, be: Any, feeds: dict[str, np.ndarray] | None = None, rtol: float = 1e-4, atol: float = 1e-5
) -> None:
    """The GPU result equals onnxruntime's within tolerance, output by output."""
    feeds = feeds if feeds is not None else random_feeds(graph)
    got, want = run_gpu(graph, feeds, be), reference(graph, feeds)
    for name in graph.outputs:
        assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape, name
        np.testing.assert_allclose(got[name], want[name], rtol=rtol, atol=atol, err_msg=name)
