"""The NPU kernel catalog: which ops match, why others do not, references, padding and the packed weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
from npu_fixtures import make_model, to_ir
from onnx import helper

from codegen import npu
from codegen.npu.catalog import KERNELS, MATMUL, SOFTMAX
from ragc.costmodel.npu import XdnaTiming
from runtime_min.format import from_bf16_bits

RNG = np.random.default_rng(7)
XDNA2 = XdnaTiming.from_params()


def _w(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _graph(op_type: str, inputs: dict, consts: dict, **attrs):
    """One op reading `inputs` then `consts`, or the names listed in attrs["order"]."""
    names = attrs.pop("order", None) or list(inputs) + list(consts)
    node = helper.make_node(op_type, names, ["y"], name="op", **attrs)
    return to_ir(make_model([node], inputs, consts, ["y"]))


SUPPORTED = [
    ("MatMul", {"x": (2, 5, 70)}, {"w": _w(70, 33)}, {}),
    ("Gemm", {"x": (5, 70)}, {"w": _w(33, 70), "b": _w(33)}, {"transB": 1}),
    ("Conv", {"x": (1, 3, 8, 8)}, {"w": _w(4, 3, 3, 3), "b": _w(4)}, {"pads": [1, 1, 1, 1]}),
    ("Add", {"x": (2, 3, 4), "z": (4,)}, {}, {}),
    ("Mul", {"x": (2, 3, 4)}, {"s": _w(3, 1)}, {}),
    ("Relu", {"x": (3, 7)}, {}, {}),
    ("Gelu", {"x": (3, 7)}, {}, {"approximate": "tanh"}),
    ("Sigmoid", {"x": (3, 7)}, {}, {}),
    ("Tanh", {"x": (3, 7)}, {}, {}),
    ("Swish", {"x": (3, 7)}, {}, {}),
    ("Softmax", {"x": (3, 100)}, {}, {"axis": -1}),
]


@pytest.mark.parametrize(("op_type", "inputs", "consts", "attrs"), SUPPORTED, ids=[s[0] for s in SUPPORTED])
def test_supported_ops_match(op_type, inputs, consts, attrs):
    g = _graph(op_type, inputs, consts, **attrs)
    assert npu.unsupported_reason(g, g.ops[0]) is None


UNSUPPORTED = [
    ("Flatten", {"x": (2, 3, 4)}, {}, {}, "no NPU kernel"),
    ("Conv", {"x": (1, 4, 8, 8)}, {"w": _w(4, 1, 3, 3)}, {"group": 4}, "groups > 1"),
    ("Conv", {"x": (1, 3, 8, 8), "w": (4, 3, 3, 3)}, {}, {}, "runtime weights"),
    ("Softmax", {"x": (3, 100)}, {}, {"axis": 0}, "last axis"),
    ("Swish", {"x": (3, 7)}, {}, {"alpha": 2.0}, "alpha"),
    ("Gemm", {"x": (5, 70), "b": (5, 33)}, {"w": _w(70, 33)}, {"order": ["x", "w", "b"]}, "per-column bias"),
    ("Gemm", {"x": (5, 70), "w": (70, 33)}, {"b": _w(33)}, {}, "runtime B"),
    ("MatMul", {"x": (2, 5, 70), "w": (2, 70, 33)}, {}, {}, "batched MatMul"),
    ("MatMul", {"x": (70,)}, {"w": _w(70, 33)}, {}, "1-D"),
]


@pytest.mark.parametrize(
    ("op_type", "inputs", "consts", "attrs", "why"), UNSUPPORTED, ids=[f"{u[0]}-{u[4]}" for u in UNSUPPORTED]
)
def test_unsupported_ops_say_why(op_type, inputs, consts, attrs, why):
    g = _graph(op_type, inputs, consts, **attrs)
    reason = npu.unsupported_reason(g, g.ops[0])
    assert reason is not None and why in reason and "\n" not in reason


def test_non_float_tensors_are_refused():
    g = _graph("Relu", {"x": (3, 7)}, {})
    g.tensors["x"].dtype = "int64"
    assert "float32" in npu.unsupported_reason(g, g.ops[0])


def test_matmul_reference_follows_mlir_aie_conventions():
    ref = MATMUL.reference("npu2", MATMUL.padded((5, 71, 33)))
    assert ref["dims"] == {"M": 64, "K": 128, "N": 64}
    assert (ref["xclbin"], ref["insts"], ref["kernel_name"]) == (
        "final_64x128x64.xclbin",
        "insts_64x128x64.txt",
        "MLIR_AIE",
    )
    args = ref["arguments"]
    assert [a["index"] for a in args] == [0, 1, 2, 3, 4, 5]
    assert args[0] == {"index": 0, "role": "opcode", "value": 3}
    assert (args[1]["group_id"], args[1]["flags"]) == (1, "cacheable")
    assert [(a["role"], a["group_id"], a["flags"], a["bytes"]) for a in args[3:]] == [
        ("A", 3, "host_only", 64 * 128 * 2),
        ("B", 4, "host_only", 128 * 64 * 2),
        ("C", 5, "host_only", 64 * 64 * 4),
    ]
    assert ref["build_args"]["devicename"] == "npu2" and ref["build_args"]["dtype_out"] == "f32"


def test_padding_rules():
    assert MATMUL.padded((1, 1, 1)) == (64, 64, 64)
    assert MATMUL.padded((64, 65, 128)) == (64, 128, 128)
    assert KERNELS["relu"].padded((100,)) == (1024,) and KERNELS["add"].padded((1500,)) == (2048,)
    assert SOFTMAX.padded((3, 100)) == (3, 128) and SOFTMAX.pad_value == "-inf"


def test_unary_designs_sharing_a_folder_get_distinct_files():
    refs = [KERNELS[k].reference("npu2", (1024,)) for k in ("sigmoid", "tanh")]
    assert refs[0]["design"] == refs[1]["design"] and refs[0]["xclbin"] != refs[1]["xclbin"]


def _program(artifact) -> dict:
    return json.loads(artifact.files[artifact.meta["program"]])


def test_gemm_weights_are_transposed_padded_bf16_with_bias_row():
    w, b = _w(33, 70), _w(33)
    g = _graph("Gemm", {"x": (5, 70)}, {"w": w, "b": b}, transB=1, alpha=0.5, beta=2.0)
    art = npu.emit(g, "p3", XDNA2)
    assert sorted(art.files) == ["p3.npu.json"]
    step = _program(art)["steps"][0]
    assert step["lowering"] == "gemm+bias_row" and step["kernel"]["dims"] == {"M": 64, "K": 128, "N": 64}
    assert step["inputs"][0]["transforms"] == [{"append_ones": 1}] and step["inputs"][0]["shape"] == [5, 71]
    entry = _program(art)["weights"][step["inputs"][1]["weight"]]
    assert entry["offset"] % 64 == 0 and entry["shape"] == [128, 64]
    bits = np.frombuffer(art.store.data(), "<u2", count=128 * 64, offset=entry["offset"])
    packed = from_bf16_bits(bits).reshape(128, 64)
    np.testing.assert_allclose(packed[:70, :33], 0.5 * w.T, rtol=2**-8)
    np.testing.assert_allclose(packed[70, :33], 2.0 * b, rtol=2**-8)
    assert not packed[71:].any() and not packed[:, 33:].any()


def test_conv_records_im2col_lowering():
    g = _graph("Conv", {"x": (1, 3, 9, 9)}, {"w": _w(8, 3, 3, 3), "b": _w(8)}, pads=[1, 1, 1, 1], strides=[2, 2])
    step = _program(npu.emit(g, "p1", XDNA2))["steps"][0]
    assert step["lowering"] == "im2col+gemm+bias_row"
    im2col = step["inputs"][0]["transforms"][0]["im2col"]
    assert im2col == {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "dilations": [1, 1], "output": [5, 5]}
    assert step["kernel"]["dims"] == {"M": 64, "K": 64, "N": 64}  # M = 25, K = 27 + 1 bias column, N = 8
    assert step["output"]["transforms"] == [{"reshape": [1, 5, 5, 8]}, {"transpose": [0, 3, 1, 2]}]


def test_emit_is_deterministic_and_carries_the_target():
    g = _graph("Conv", {"x": (1, 3, 8, 8)}, {"w": _w(4, 3, 3, 3), "b": _w(4)})
    timing = XdnaTiming.from_params({"arch": "xdna"})
    first, second = npu.emit(g, "p1", timing), npu.emit(g, "p1", timing)
    assert first.files == second.files and first.meta == second.meta
    assert first.store.data() == second.store.data()
    assert _program(first)["launch"] == timing.launch() and _program(first)["device"] == "npu"
    assert _program(first)["steps"][0]["kernel"]["build_args"]["devicename"] == "npu"


def test_emit_refuses_unsupported_ops_by_name():
    g = _graph("Flatten", {"x": (2, 3, 4)}, {})
    with pytest.raises(npu.NpuCodegenError, match=r"op op \(Flatten\) cannot run on the NPU"):
        npu.emit(g, "p1", XDNA2)


def test_kernel_calls_give_the_cost_model_padded_dims():
    conv = _graph("Conv", {"x": (1, 3, 9, 9)}, {"w": _w(8, 3, 3, 3), "b": _w(8)}, pads=[1, 1, 1, 1], strides=[2, 2])
    assert npu.kernel_calls(conv, conv.ops[0]) == [("matmul", (64, 64, 64))]
    softmax = _graph("Softmax", {"x": (3, 100)}, {})
    assert npu.kernel_calls(softmax, softmax.ops[0], arch="xdna") == [("softmax", (3, 128))]
    with pytest.raises(npu.NpuCodegenError, match="Flatten"):
        flat = _graph("Flatten", {"x": (2, 3, 4)}, {})
        npu.kernel_calls(flat, flat.ops[0])


def test_softmax_default_axis_follows_the_opset():
    g = _graph("Softmax", {"x": (2, 3, 4)}, {})
    assert npu.unsupported_reason(g, g.ops[0]) is None
    g.opset = 12  # before opset 13 the default axis was 1
    assert "axis 1" in npu.unsupported_reason(g, g.ops[0])
