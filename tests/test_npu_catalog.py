"""The NPU kernel catalog: which ops match, why others do not, references, padding, epilogue fusion, segments and
the packed weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
from npu_fixtures import make_model, to_ir
from onnx import TensorProto, helper

from codegen import npu
from codegen.npu.catalog import KERNELS, MATMUL, SOFTMAX
from codegen.npu.fuse import epilogues
from ragc.costmodel.npu import XdnaTiming
from ragc.targets import load_target
from runtime_min.format import from_bf16_bits

RNG = np.random.default_rng(7)
XDNA2 = XdnaTiming.from_params()


def _w(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _graph(op_type: str, inputs: dict, consts: dict, dtype=TensorProto.FLOAT, **attrs):
    """One op reading `inputs` then `consts`, or the names listed in attrs["order"]."""
    names = attrs.pop("order", None) or list(inputs) + list(consts)
    node = helper.make_node(op_type, names, ["y"], name="op", **attrs)
    return to_ir(make_model([node], inputs, consts, ["y"], dtype))


def _chain(nodes, inputs, consts):
    return to_ir(make_model(nodes, inputs, consts, ["y"]))


SUPPORTED = [
    ("MatMul", {"x": (2, 5, 70)}, {"w": _w(70, 33)}, {}),
    ("Gemm", {"x": (5, 70)}, {"w": _w(33, 70), "b": _w(33)}, {"transB": 1}),
    ("Conv", {"x": (1, 3, 8, 8)}, {"w": _w(4, 3, 3, 3), "b": _w(4)}, {"pads": [1, 1, 1, 1]}),
    ("Conv", {"x": (1, 4, 8, 8)}, {"w": _w(4, 1, 3, 3)}, {"group": 4}),
    ("Conv", {"x": (1, 4, 8, 8)}, {"w": _w(6, 2, 3, 3)}, {"group": 2}),
    ("Add", {"x": (2, 3, 4), "z": (4,)}, {}, {}),
    ("Mul", {"x": (2, 3, 4)}, {"s": _w(3, 1)}, {}),
    ("Relu", {"x": (3, 7)}, {}, {}),
    ("Gelu", {"x": (3, 7)}, {}, {"approximate": "tanh"}),
    ("Clip", {"x": (3, 7)}, {"lo": np.float32(0), "hi": np.float32(6)}, {}),
    ("Softmax", {"x": (3, 100)}, {}, {"axis": -1}),
    ("LayerNormalization", {"x": (3, 100)}, {"g": _w(100), "b": _w(100)}, {}),
    ("RMSNormalization", {"x": (3, 100)}, {"g": _w(100)}, {}),
    ("Attention", {"q": (1, 2, 8, 16), "k": (1, 2, 8, 16), "v": (1, 2, 8, 16)}, {}, {"is_causal": 1}),
    ("Reshape", {"x": (2, 3, 4)}, {"shape": np.array([6, 4], np.int64)}, {}),
]


@pytest.mark.parametrize(("op_type", "inputs", "consts", "attrs"), SUPPORTED, ids=[s[0] for s in SUPPORTED])
def test_supported_ops_match(op_type, inputs, consts, attrs):
    g = _graph(op_type, inputs, consts, **attrs)
    assert npu.unsupported_reason(g, g.ops[0]) is None


def test_int8_gemms_match_and_float_ones_refuse_int8():
    g = _graph("MatMulInteger", {"x": (4, 16)}, {"w": RNG.integers(-9, 9, (16, 8)).astype(np.int8)}, TensorProto.INT8)
    assert npu.unsupported_reason(g, g.ops[0]) is None
    g = _graph("Relu", {"x": (3, 7)}, {})
    g.tensors["x"].dtype = "int64"
    assert "float32" in npu.unsupported_reason(g, g.ops[0])


UNSUPPORTED = [
    ("MaxPool", {"x": (1, 2, 4, 4)}, {}, {"kernel_shape": [2, 2]}, "no NPU kernel"),
    ("Conv", {"x": (1, 3, 8, 8), "w": (4, 3, 3, 3)}, {}, {}, "runtime weights"),
    ("Softmax", {"x": (3, 100)}, {}, {"axis": 0}, "last axis"),
    ("LayerNormalization", {"x": (3, 100)}, {"g": _w(3, 100)}, {"axis": 0}, "one value per column"),
    ("RMSNormalization", {"x": (3, 100), "g": (100,)}, {}, {}, "runtime scale"),
    ("Swish", {"x": (3, 7)}, {}, {"alpha": 2.0}, "alpha"),
    ("Clip", {"x": (3, 7), "lo": ()}, {}, {}, "runtime bounds"),
    ("Gemm", {"x": (5, 70), "b": (5, 33)}, {"w": _w(70, 33)}, {"order": ["x", "w", "b"]}, "per-column bias"),
    ("MatMul", {"x": (2, 5, 70), "w": (2, 70, 33)}, {}, {}, "batched MatMul"),
    ("MatMul", {"x": (70,)}, {"w": _w(70, 33)}, {}, "1-D"),
    ("Attention", {"q": (1, 2, 8, 16), "k": (1, 2, 8, 16), "v": (1, 2, 8, 16), "m": (8, 8)}, {}, {}, "mask"),
    ("Attention", {"q": (1, 3, 8, 16), "k": (1, 2, 8, 16), "v": (1, 2, 8, 16)}, {}, {}, "GQA"),
]


@pytest.mark.parametrize(
    ("op_type", "inputs", "consts", "attrs", "why"), UNSUPPORTED, ids=[f"{u[0]}-{u[4]}" for u in UNSUPPORTED]
)
def test_unsupported_ops_say_why(op_type, inputs, consts, attrs, why):
    g = _graph(op_type, inputs, consts, **attrs)
    reason = npu.unsupported_reason(g, g.ops[0])
    assert reason is not None and why in reason and "\n" not in reason


def _program(artifact) -> dict:
    return json.loads(artifact.files[artifact.meta["program"]])


def test_gemm_reference_follows_mlir_aie_conventions():
    g = _graph("MatMul", {"x": (5, 71)}, {"w": _w(71, 33)})
    ref = _program(npu.emit(g, "p1", XDNA2))["steps"][0]["kernel"]
    t = ref["tiling"]
    assert (ref["design"], ref["kernel_name"]) == ("basic/matrix_multiplication/whole_array", "MLIR_AIE")
    assert ref["xclbin"] == f"final_gemm_bf16_bf16_{t['m']}x{t['k']}x{t['n']}_{t['cols']}c.xclbin"
    assert ref["insts"] == "insts_matmul_{M}x{K}x{N}.txt".format(**ref["dims"])
    assert ref["dims"]["M"] % (t["rows"] * t["m"]) == 0 and ref["dims"]["K"] % t["k"] == 0
    assert ref["dims"]["N"] % (t["cols"] * t["n"]) == 0 and ref["dims"]["K"] >= 71
    args = ref["arguments"]
    assert [a["index"] for a in args] == [0, 1, 2, 3, 4, 5]
    assert args[0] == {"index": 0, "role": "opcode", "value": 3}
    assert (args[1]["group_id"], args[1]["flags"]) == (1, "cacheable")
    dims = ref["dims"]
    assert [(a["role"], a["group_id"], a["flags"], a["bytes"]) for a in args[3:]] == [
        ("A", 3, "host_only", dims["M"] * dims["K"] * 2),
        ("B", 4, "host_only", dims["K"] * dims["N"] * 2),
        ("C", 5, "host_only", dims["M"] * dims["N"] * 2),
    ]
    build = ref["build_args"]
    assert build["devicename"] == "npu2" and (build["m"], build["n_aie_cols"]) == (t["m"], t["cols"])
    # a 2-D tiling that fits one core's L1: A and B double-buffered, C c_depth deep
    assert 2 * (t["m"] * t["k"] + t["k"] * t["n"]) * 2 + t["c_depth"] * t["m"] * t["n"] * 2 <= 64 * 1024 - 1024


def test_padding_rules():
    assert MATMUL.padded((1, 1, 1), (64, 16, 128)) == (64, 16, 128)
    assert KERNELS["relu"].padded((100,)) == (1024,) and KERNELS["add"].padded((1500,)) == (2048,)
    assert SOFTMAX.padded((3, 100)) == (3, 128) and SOFTMAX.pad_value == "-inf"


def test_vector_ops_share_one_xclbin_and_differ_by_instruction_stream():
    refs = []
    for op_type in ("Sigmoid", "Tanh", "Relu"):
        g = _graph(op_type, {"x": (3, 700)}, {})
        refs.append(_program(npu.emit(g, "p1", XDNA2))["steps"][0]["kernel"])
    assert {r["xclbin"] for r in refs} == {"final_vector_bf16.xclbin"} and {r["design"] for r in refs} == {"ml/eltwise"}
    assert len({r["insts"] for r in refs}) == 3


def test_gemm_bias_is_an_epilogue_with_a_packed_row():
    w, b = _w(33, 70), _w(33)
    g = _graph("Gemm", {"x": (5, 70)}, {"w": w, "b": b}, transB=1, alpha=0.5, beta=2.0)
    art = npu.emit(g, "p3", XDNA2)
    assert sorted(art.files) == ["p3.npu.json"]
    program = _program(art)
    step = program["steps"][0]
    assert step["lowering"] == "gemm" and [e["kind"] for e in step["kernel"]["epilogue"]] == ["bias"]
    assert [i["role"] for i in step["inputs"]] == ["A", "B", "bias"]
    kp, np_ = step["kernel"]["dims"]["K"], step["kernel"]["dims"]["N"]
    entry = program["weights"][step["inputs"][1]["weight"]]
    assert entry["offset"] % 64 == 0 and entry["shape"] == [kp, np_] and entry["dtype"] == "bfloat16"
    packed = from_bf16_bits(np.frombuffer(art.store.data(), "<u2", count=kp * np_, offset=entry["offset"]))
    packed = packed.reshape(kp, np_)
    np.testing.assert_allclose(packed[:70, :33], 0.5 * w.T, rtol=2**-8)
    assert not packed[70:].any() and not packed[:, 33:].any()
    bias = program["weights"][step["inputs"][2]["weight"]]
    row = from_bf16_bits(np.frombuffer(art.store.data(), "<u2", count=np_, offset=bias["offset"]))
    np.testing.assert_allclose(row[:33], 2.0 * b, rtol=2**-8)


def test_conv_records_im2col_lowering():
    g = _graph("Conv", {"x": (1, 3, 9, 9)}, {"w": _w(8, 3, 3, 3), "b": _w(8)}, pads=[1, 1, 1, 1], strides=[2, 2])
    step = _program(npu.emit(g, "p1", XDNA2))["steps"][0]
    assert step["lowering"] == "im2col+gemm"
    im2col = step["inputs"][0]["transforms"][0]["im2col"]
    assert im2col == {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "dilations": [1, 1], "output": [5, 5]}
    assert step["inputs"][0]["shape"] == [25, 27]
    assert step["output"]["transforms"] == [{"reshape": [1, 5, 5, 8]}, {"transpose": [0, 3, 1, 2]}]


def test_elementwise_chains_fuse_into_the_gemm_epilogue():
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
        helper.make_node("Add", ["m", "b"], ["a"], name="bias"),
        helper.make_node("Gelu", ["a"], ["g"], name="gelu"),
        helper.make_node("Mul", ["g", "s"], ["h"], name="scale"),
        helper.make_node("Add", ["h", "x"], ["y"], name="residual"),
    ]
    g = _chain(nodes, {"x": (1, 8, 32)}, {"w": _w(32, 32), "b": _w(32), "s": np.float32(0.5)})
    assert epilogues(g) == {"mm": ["bias", "gelu", "scale", "residual"]}
    steps = _program(npu.emit(g, "p1", XDNA2))["steps"]
    assert len(steps) == 1 and steps[0]["fused"] == ["bias", "gelu", "scale", "residual"]
    kinds = [e["kind"] for e in steps[0]["kernel"]["epilogue"]]
    assert kinds == ["bias", "gelu", "scale", "add"] and steps[0]["kernel"]["insts"].endswith(
        "_bias-gelu-scale-add.txt"
    )
    assert steps[0]["output"]["tensor"] == "y"


def test_fusion_stops_where_a_tensor_has_two_readers_or_is_an_output():
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
        helper.make_node("Relu", ["m"], ["r"], name="relu"),
        helper.make_node("Add", ["r", "m"], ["y"], name="add"),
    ]
    g = _chain(nodes, {"x": (4, 16)}, {"w": _w(16, 16)})
    assert epilogues(g) == {}


def test_a_gate_joins_the_later_gemm():
    """SwiGLU: silu(gate) * up fuses the Mul into up's epilogue (gate's output exists by then), Swish into gate's."""
    nodes = [
        helper.make_node("MatMul", ["x", "wg"], ["gate"], name="gate"),
        helper.make_node("Swish", ["gate"], ["s"], name="silu"),
        helper.make_node("MatMul", ["x", "wu"], ["up"], name="up"),
        helper.make_node("Mul", ["s", "up"], ["y"], name="gated"),
    ]
    g = _chain(nodes, {"x": (4, 16)}, {"wg": _w(16, 24), "wu": _w(16, 24)})
    assert epilogues(g) == {"gate": ["silu"], "up": ["gated"]}


def test_segments_follow_xclbin_changes():
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["a"], name="mm1"),
        helper.make_node("Softmax", ["a"], ["b"], name="sm", axis=-1),
        helper.make_node("MatMul", ["b", "w2"], ["c"], name="mm2"),
        helper.make_node("MatMul", ["c", "w3"], ["y"], name="mm3"),
    ]
    g = _chain(nodes, {"x": (64, 64)}, {"w": _w(64, 64), "w2": _w(64, 64), "w3": _w(64, 64)})
    program = _program(npu.emit(g, "p1", XDNA2))
    assert [s["steps"] for s in program["segments"]] == [[0], [1], [2, 3]]
    assert all(s["context_switch_ms"] == XDNA2.launch_costs.context_switch_ms for s in program["segments"])
    assert all(s["host_sync_ms"] == XDNA2.launch_costs.host_sync_ms for s in program["segments"])
    assert program["launch"] == XDNA2.launch()


def test_emit_is_deterministic_and_carries_the_target():
    g = _graph("Conv", {"x": (1, 3, 8, 8)}, {"w": _w(4, 3, 3, 3), "b": _w(4)})
    timing = XdnaTiming.from_params(load_target("ryzen-7-7840u")["npu"])
    first, second = (
        npu.emit(g, "p1", timing),
        npu.emit(g, "p1", XdnaTiming.from_params(load_target("ryzen-7-7840u")["npu"])),
    )
    assert first.files == second.files and first.meta == second.meta
    assert first.store.data() == second.store.data()
    assert _program(first)["device"] == "npu"
    assert _program(first)["steps"][0]["kernel"]["build_args"]["devicename"] == "npu"
    assert _program(first)["steps"][0]["kernel"]["tiling"]["cols"] <= 4  # Phoenix: 4 columns with shim DMAs


def test_emit_refuses_unsupported_ops_by_name():
    g = _graph("MaxPool", {"x": (1, 2, 4, 4)}, {}, kernel_shape=[2, 2])
    with pytest.raises(npu.NpuCodegenError, match=r"op op \(MaxPool\) cannot run on the NPU"):
        npu.emit(g, "p1", XDNA2)
