"""The ONNX backend node tests of every op the GPU runs, compiled by codegen.gpu and run through the Vulkan backend.

A case whose model the GPU cannot run (an op or variant `unsupported_reason` rejects, a dtype other than float32,
a shape the front end cannot make static) is skipped with the reason; every other case must match the expected
outputs. Known failures in ops owned elsewhere are listed in KNOWN_FAILURES and run as strict xfails.
"""

from __future__ import annotations

import re
from functools import cache

import numpy as np
import onnx
import pytest
from gpu_harness import backend, run_gpu
from onnx import helper, numpy_helper
from onnx.backend.test.case.node import collect_testcases

from codegen.gpu import unsupported_reason
from ragc import ir
from ragc.errors import RagcError
from ragc.frontend.to_ir import to_ir

GPU_OPS = (
    "Conv Gemm MatMul Add Sub Mul Div Pow Sqrt Exp Log Relu LeakyRelu Sigmoid Tanh Erf Gelu Clip HardSigmoid "
    "HardSwish Neg Abs Where Equal Less Greater Sum Mean Max Min MaxPool AveragePool GlobalAveragePool Softmax "
    "LayerNormalization ReduceMean ReduceSum ReduceMax Transpose Concat Split Slice Gather Pad Resize Cast Expand "
    "Reshape Flatten Squeeze Unsqueeze Identity IsNaN IsInf Not And Or Xor Mod Floor Ceil Round Sin Cos Reciprocal "
    "Sign LessOrEqual GreaterOrEqual Softplus ReduceMin ReduceProd ReduceL1 ReduceL2 ReduceSumSquare ArgMax ArgMin "
    "CumSum GatherElements GatherND ScatterElements ScatterND Tile Trilu Range Einsum RMSNormalization "
    "RotaryEmbedding Attention"
).split()

# inputs an op reads at compile time: a graph input feeding only these slots becomes an initializer
COMPILE_TIME = {
    "Reshape": (1,),
    "Slice": (1, 2, 3, 4),
    "Pad": (1, 2, 3),
    "Resize": (1, 2, 3),
    "Expand": (1,),
    "Split": (1,),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
    "ReduceMean": (1,),
    "ReduceSum": (1,),
    "ReduceMax": (1,),
    "ReduceMin": (1,),
    "ReduceProd": (1,),
    "ReduceL1": (1,),
    "ReduceL2": (1,),
    "ReduceSumSquare": (1,),
    "CumSum": (1,),
    "Tile": (1,),
    "Trilu": (1,),
}

# case name -> why it fails today (ops owned by another engineer); each runs as a strict xfail
KNOWN_FAILURES: dict[str, str] = {}


@cache
def _op_names() -> dict[str, str]:
    """snake_case and lowercase spellings of every ONNX op -> the op type (test cases are named after one)."""
    names: dict[str, str] = {}
    for schema in onnx.defs.get_all_schemas():
        op = schema.name
        names[op.lower()] = op
        names[re.sub(r"(?<!^)(?=[A-Z])", "_", op).lower()] = op
    return names


def case_op(case) -> str | None:
    """The op a node test case tests: its only op besides Constant, else the longest ONNX op name its name starts
    with (expanded function cases)."""
    ops = {node.op_type for node in case.model.graph.node} - {"Constant"}
    if len(ops) == 1:
        return ops.pop()
    name = case.name.removeprefix("test_")
    found = [spelling for spelling in _op_names() if name == spelling or name.startswith(spelling + "_")]
    return _op_names()[max(found, key=len)] if found else None


def gpu_cases() -> list:
    """Node test cases named after a GPU op, sorted by name."""
    cases = [c for c in collect_testcases() if c.kind == "node" and case_op(c) in GPU_OPS]
    return sorted(cases, key=lambda c: c.name)


def _constant_value(node: onnx.NodeProto) -> np.ndarray:
    (attr,) = node.attribute
    value = helper.get_attribute_value(attr)
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    return np.array(value, dtype=np.float32 if attr.name.startswith("value_float") else np.int64)


def _compile_time_inputs(graph: onnx.GraphProto) -> set[str]:
    """Graph inputs read only in compile-time slots (Reshape's shape, Slice's starts, ...)."""
    slots: dict[str, list[bool]] = {}
    for node in graph.node:
        for k, name in enumerate(node.input):
            slots.setdefault(name, []).append(k in COMPILE_TIME.get(node.op_type, ()))
    return {vi.name for vi in graph.input if slots.get(vi.name) and all(slots[vi.name])}


def prepare_model(model: onnx.ModelProto, inputs: list[np.ndarray]) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """The model with Constant nodes and compile-time inputs as initializers, shapes inferred, and its feeds."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    values = {vi.name: arr for vi, arr in zip(graph.input, inputs, strict=False)}
    frozen = _compile_time_inputs(graph)
    for node in [n for n in graph.node if n.op_type == "Constant"]:
        graph.initializer.append(numpy_helper.from_array(_constant_value(node), node.output[0]))
        graph.node.remove(node)
    for name in sorted(frozen):
        graph.initializer.append(numpy_helper.from_array(np.asarray(values[name]), name))
    kept = [vi for vi in graph.input if vi.name not in frozen]
    del graph.input[:]
    graph.input.extend(kept)
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    return model, {vi.name: values[vi.name] for vi in kept}


def as_array(value) -> np.ndarray | None:
    """A test case's input or output as a numpy array (None for sequences and optionals)."""
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    return np.asarray(value) if isinstance(value, np.ndarray | np.generic) else None


def _gpu_graph(model: onnx.ModelProto, inputs: list[np.ndarray | None]) -> tuple[ir.Graph, dict[str, np.ndarray]]:
    """The case as a ragc graph the GPU can run, or pytest.skip with the reason it cannot."""
    if any(x is None for x in inputs):
        pytest.skip("inputs are sequences or optionals, not tensors")
    try:
        prepared, feeds = prepare_model(model, inputs)
        graph = to_ir(prepared)
    except (onnx.shape_inference.InferenceError, RagcError) as exc:
        pytest.skip(f"front end: {str(exc).splitlines()[0]}")
    for op in graph.ops:
        reason = unsupported_reason(graph, op)
        if reason:
            pytest.skip(f"{op.op_type}: {reason}")
    if not graph.ops:
        pytest.skip("no op left after constant folding")
    return graph, feeds


@pytest.fixture(scope="module")
def be():
    b = backend()
    yield b
    b.close()


def _params() -> list:
    return [
        pytest.param(
            case,
            id=case.name,
            marks=[pytest.mark.xfail(reason=KNOWN_FAILURES[case.name], strict=True)]
            if case.name in KNOWN_FAILURES
            else [],
        )
        for case in gpu_cases()
    ]


@pytest.mark.parametrize("case", _params())
def test_node_case(be, case):
    rtol, atol = max(1e-4, case.rtol), max(1e-5, case.atol)
    for inputs, outputs in case.data_sets:
        graph, feeds = _gpu_graph(case.model, [as_array(x) for x in inputs])
        got = run_gpu(graph, feeds, be)
        for name, want in zip(graph.outputs, map(as_array, outputs), strict=True):
            assert got[name].shape == want.shape and got[name].dtype == want.dtype, name
            if want.dtype.kind == "f":
                np.testing.assert_allclose(got[name], want, rtol=rtol, atol=atol, err_msg=name)
            else:
                np.testing.assert_array_equal(got[name], want, err_msg=name)
