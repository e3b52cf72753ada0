"""The simulated NPU: every kernel's bf16 (and int8) numerics against onnxruntime, the replay of the segments and
launch costs the compiler wrote, and the sim backend's refusals of bad feeds and hostile programs.

Tolerance (npu_fixtures.assert_close_bf16): rtol 2e-2 plus atol 1e-2 of the output's largest magnitude, since
operands are rounded to bf16 (relative step 2^-8) and GEMMs accumulate in fp32.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from npu_fixtures import assert_close_bf16, make_model, run_ort, to_ir, write_bundle
from onnx import TensorProto, helper

from ragc.targets import load_target
from runtime_min.backends.base import StepTiming
from runtime_min.backends.npu_sim import NpuSimBackend
from runtime_min.errors import BundleError, InputError
from runtime_min.format import from_bf16_bits, round_bf16, to_bf16_bits
from runtime_min.options import LoadOptions

RNG = np.random.default_rng(11)


def _w(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _node(op_type: str, inputs: list[str], output: str = "y", **attrs):
    return helper.make_node(op_type, inputs, [output], name=f"{op_type}_{output}", **attrs)


def _simulate(model, feeds, tmp_path: Path, target_npu=None):
    partition, bundle = write_bundle(to_ir(model), tmp_path, target_npu=target_npu)
    executable = NpuSimBackend.open(LoadOptions()).prepare(partition, bundle)
    return executable, executable.run(feeds)


def _q(name: str, value, dtype=np.float32) -> dict:
    return {name: np.asarray(value, dtype)}


CASES = {
    "matmul-3d": ([_node("MatMul", ["x", "w"])], {"x": (2, 5, 70)}, {"w": _w(70, 33)}),
    "matmul-runtime-b": ([_node("MatMul", ["x", "z"])], {"x": (9, 20), "z": (20, 130)}, {}),
    "gemv": ([_node("MatMul", ["x", "w"])], {"x": (1, 300)}, {"w": _w(300, 70)}),
    "gemv-bias-gelu": (
        [_node("MatMul", ["x", "w"], "m"), _node("Add", ["m", "b"], "a"), _node("Gelu", ["a"])],
        {"x": (1, 1, 96)},
        {"w": _w(96, 40), "b": _w(40)},
    ),
    "gemm-trans-bias": (
        [_node("Gemm", ["x", "w", "b"], transA=1, transB=1, alpha=0.5, beta=2.0)],
        {"x": (70, 5)},
        {"w": _w(33, 70), "b": _w(33)},
    ),
    "matmul-bias-gelu-residual": (
        [
            _node("MatMul", ["x", "w"], "m"),
            _node("Add", ["m", "b"], "a"),
            _node("Gelu", ["a"], "g"),
            _node("Add", ["g", "x"], "y"),
        ],
        {"x": (1, 12, 48)},
        {"w": _w(48, 48), "b": _w(48)},
    ),
    "swiglu": (
        [
            _node("MatMul", ["x", "wg"], "gate"),
            _node("Swish", ["gate"], "s"),
            _node("MatMul", ["x", "wu"], "up"),
            _node("Mul", ["s", "up"], "h"),
            _node("MatMul", ["h", "wd"], "y"),
        ],
        {"x": (10, 32)},
        {"wg": _w(32, 80), "wu": _w(32, 80), "wd": _w(80, 32)},
    ),
    "conv-stride-pad-bias": (
        [_node("Conv", ["x", "w", "b"], pads=[1, 2, 1, 0], strides=[2, 1])],
        {"x": (2, 3, 9, 8)},
        {"w": _w(8, 3, 3, 3), "b": _w(8)},
    ),
    "conv-dilated": ([_node("Conv", ["x", "w"], dilations=[2, 2])], {"x": (1, 4, 10, 10)}, {"w": _w(6, 4, 3, 3)}),
    "conv-1x1": ([_node("Conv", ["x", "w"])], {"x": (1, 16, 5, 5)}, {"w": _w(32, 16, 1, 1)}),
    "conv-bias-relu-residual": (
        [
            _node("Conv", ["x", "w", "b"], "c", pads=[1, 1, 1, 1]),
            _node("Relu", ["c"], "r"),
            _node("Add", ["r", "x"], "y"),
        ],
        {"x": (1, 8, 6, 6)},
        {"w": _w(8, 8, 3, 3), "b": _w(8)},
    ),
    "conv-grouped": (
        [_node("Conv", ["x", "w", "b"], group=4, pads=[1, 1, 1, 1])],
        {"x": (1, 8, 7, 7)},
        {"w": _w(12, 2, 3, 3), "b": _w(12)},
    ),
    "conv-depthwise-bias-relu6": (
        [
            _node("Conv", ["x", "w", "b"], "c", group=12, pads=[1, 1, 1, 1], strides=[2, 2]),
            _node("Clip", ["c", "lo", "hi"], "y"),
        ],
        {"x": (1, 12, 9, 9)},
        {"w": _w(12, 1, 3, 3), "b": _w(12), "lo": np.float32(0.0), "hi": np.float32(6.0)},
    ),
    "conv-depthwise-dilated-5x5": (
        [_node("Conv", ["x", "w"], group=6, pads=[4, 4, 4, 4], dilations=[2, 2])],
        {"x": (2, 6, 8, 8)},
        {"w": _w(6, 1, 5, 5)},
    ),
    "add-broadcast": ([_node("Add", ["x", "z"])], {"x": (2, 3, 40), "z": (40,)}, {}),
    "mul-const": ([_node("Mul", ["x", "s"])], {"x": (2, 3, 40)}, {"s": _w(3, 1)}),
    "relu": ([_node("Relu", ["x"])], {"x": (4, 300)}, {}),
    "clip": ([_node("Clip", ["x", "lo", "hi"])], {"x": (4, 300)}, {"lo": np.float32(-1.0), "hi": np.float32(0.5)}),
    "gelu-erf": ([_node("Gelu", ["x"])], {"x": (4, 300)}, {}),
    "gelu-tanh": ([_node("Gelu", ["x"], approximate="tanh")], {"x": (4, 300)}, {}),
    "sigmoid": ([_node("Sigmoid", ["x"])], {"x": (4, 300)}, {}),
    "tanh": ([_node("Tanh", ["x"])], {"x": (4, 300)}, {}),
    "swish": ([_node("Swish", ["x"])], {"x": (4, 300)}, {}),
    "softmax": ([_node("Softmax", ["x"], axis=-1)], {"x": (3, 2, 100)}, {}),
    "layernorm": (
        [_node("LayerNormalization", ["x", "g", "b"], axis=-1, epsilon=1e-5)],
        {"x": (2, 5, 100)},
        {"g": _w(100), "b": _w(100)},
    ),
    "rmsnorm": ([_node("RMSNormalization", ["x", "g"], axis=-1, epsilon=1e-6)], {"x": (3, 70)}, {"g": _w(70)}),
    "attention-mha": (
        [_node("Attention", ["q", "k", "v"])],
        {"q": (1, 2, 10, 16), "k": (1, 2, 12, 16), "v": (1, 2, 12, 16)},
        {},
    ),
    "attention-gqa-causal-3d": (
        [_node("Attention", ["q", "k", "v"], is_causal=1, q_num_heads=4, kv_num_heads=2)],
        {"q": (1, 20, 64), "k": (1, 20, 32), "v": (1, 20, 32)},
        {},
    ),
    "conv-relu-matmul-softmax": (
        [
            _node("Conv", ["x", "w", "b"], "c", pads=[1, 1, 1, 1]),
            _node("Relu", ["c"], "r"),
            _node("MatMul", ["r", "m"], "mm"),
            _node("Softmax", ["mm"], "y"),
        ],
        {"x": (1, 3, 6, 6)},
        {"w": _w(4, 3, 3, 3), "b": _w(4), "m": 0.2 * _w(6, 10)},  # logits of a few units: bf16 logits feed softmax
    ),
    "reshape-between-kernels": (
        [_node("Relu", ["x"], "r"), _node("Reshape", ["r", "shape"], "f"), _node("MatMul", ["f", "w"])],
        {"x": (2, 3, 4, 5)},
        {"shape": np.array([6, 20], np.int64), "w": _w(20, 7)},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_sim_matches_onnxruntime_within_bf16_tolerance(case, tmp_path):
    nodes, inputs, consts = CASES[case]
    model = make_model(nodes, inputs, consts, ["y"])
    feeds = {name: 2 * RNG.standard_normal(shape).astype(np.float32) for name, shape in inputs.items()}
    _, out = _simulate(model, feeds, tmp_path)
    expected = run_ort(model, feeds)["y"]
    assert out["y"].dtype == np.float32 and out["y"].shape == expected.shape
    assert_close_bf16(out["y"], expected)


def test_sim_is_deterministic(tmp_path):
    nodes, inputs, consts = CASES["conv-relu-matmul-softmax"]
    model = make_model(nodes, inputs, consts, ["y"])
    feeds = {"x": _w(*inputs["x"])}
    executable, first = _simulate(model, feeds, tmp_path)
    assert np.array_equal(first["y"], executable.run(feeds)["y"])


def test_bf16_rounds_to_nearest_even():
    x = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-7 + 2**-9, -2.5, 3.4e38, np.inf, -np.inf], np.float32)
    assert round_bf16(x).tolist() == [1.0, 1.0, 1 + 2**-6, 1 + 2**-7, -2.5, np.inf, np.inf, -np.inf]
    assert np.isnan(round_bf16(np.array([np.nan], np.float32))).all()
    every = from_bf16_bits(np.arange(0, 0x7F80, 7, dtype=np.uint16))  # bf16 values survive the round trip
    assert np.array_equal(to_bf16_bits(every), np.arange(0, 0x7F80, 7, dtype=np.uint16))


def _int8(shape: tuple[int, ...]) -> np.ndarray:
    return RNG.integers(-128, 128, shape).astype(np.int8)


def test_int8_matmul_integer_is_exact(tmp_path):
    w = _int8((60, 24))
    model = make_model([_node("MatMulInteger", ["x", "w"])], {"x": (5, 60)}, {"w": w}, ["y"], TensorProto.INT8)
    feeds = {"x": _int8((5, 60))}
    _, out = _simulate(model, feeds, tmp_path)
    assert out["y"].dtype == np.int32 and np.array_equal(out["y"], run_ort(model, feeds)["y"])


def test_int8_qlinear_matmul_requantizes_like_onnxruntime(tmp_path):
    consts = {
        "a_s": np.float32(0.02),
        "a_z": np.int8(0),
        "w": _int8((64, 40)),
        "w_s": np.float32(0.01),
        "w_z": np.int8(0),
        "y_s": np.float32(0.05),
        "y_z": np.int8(3),
    }
    node = _node("QLinearMatMul", ["x", "a_s", "a_z", "w", "w_s", "w_z", "y_s", "y_z"])
    model = make_model([node], {"x": (7, 64)}, consts, ["y"], TensorProto.INT8)
    feeds = {"x": _int8((7, 64))}
    _, out = _simulate(model, feeds, tmp_path)
    expected = run_ort(model, feeds)["y"]
    assert out["y"].dtype == np.int8
    assert np.abs(out["y"].astype(int) - expected.astype(int)).max() <= 1  # fp32 vs the rescale's rounding


def test_gemm_keeps_c_in_bf16_between_k_calls(tmp_path):
    """A K of many tiling k-steps rounds C to bf16 between calls, as the kernel stores it; still within tolerance."""
    model = make_model([_node("MatMul", ["x", "w"])], {"x": (16, 2048)}, {"w": _w(2048, 64)}, ["y"])
    feeds = {"x": _w(16, 2048)}
    executable, out = _simulate(model, feeds, tmp_path)
    step = executable.program.calls[0]
    assert step["kernel"]["dims"]["K"] // step["kernel"]["tiling"]["k"] > 8
    assert_close_bf16(out["y"], run_ort(model, feeds)["y"])


def test_sim_replays_the_segments_the_compiler_wrote(tmp_path):
    """conv+relu and matmul share the GEMM xclbin (one segment), softmax is another: a context switch entering
    each (the partition uses two xclbins), one host sync ending each, one command per step."""
    nodes, inputs, consts = CASES["conv-relu-matmul-softmax"]
    model = make_model(nodes, inputs, consts, ["y"])
    executable, _ = _simulate(model, {"x": _w(*inputs["x"])}, tmp_path)
    program = executable.program
    assert [len(seg["steps"]) for seg in program.segments] == [2, 1]
    first = executable.timings()
    labels = [t.label.split(":")[-1].split()[0] for t in first]
    assert labels == [
        "cold_start",
        "context_switch",
        "matmul",
        "matmul",
        "host_sync",
        "context_switch",
        "softmax",
        "host_sync",
    ]
    assert all(t.simulated for t in first)
    assert all(a.start_ns + a.duration_ns == b.start_ns for a, b in zip(first, first[1:], strict=False))
    launch = program.launch
    kernel = first[2]
    assert kernel.duration_ns == round((program.calls[0]["simulated_ms"] + launch["runlist_entry_ms"]) * 1e6)
    assert first[1].duration_ns == round(program.segments[0]["context_switch_ms"] * 1e6)
    executable.run({"x": _w(*inputs["x"])})
    second = executable.timings()
    assert second[0].label == "context_switch"  # warm: no cold start
    assert second[0].start_ns == first[-1].start_ns + first[-1].duration_ns


def test_one_xclbin_partition_never_switches(tmp_path):
    nodes, inputs, consts = CASES["swiglu"]
    executable, _ = _simulate(make_model(nodes, inputs, consts, ["y"]), {"x": _w(10, 32)}, tmp_path)
    assert len(executable.program.segments) == 1 and executable.program.segments[0]["context_switch_ms"] == 0
    assert "context_switch" not in [t.label for t in executable.timings()]


def test_timing_comes_from_the_program(tmp_path):
    model = make_model([_node("Relu", ["x"])], {"x": (4, 300)}, {}, ["y"])
    slow = {**load_target("ryzen-ai-9-hx-370")["npu"], "host_sync_ms": 5.0}
    executable, _ = _simulate(model, {"x": _w(4, 300)}, tmp_path, target_npu=slow)
    assert executable.timings()[-1] == StepTiming("host_sync", executable.timings()[-1].start_ns, 5_000_000, True)


def test_sim_rejects_bad_feeds_and_bundles(tmp_path):
    model = make_model([_node("Relu", ["x"])], {"x": (4, 30)}, {}, ["y"])
    partition, bundle = write_bundle(to_ir(model), tmp_path)
    executable = NpuSimBackend.open(LoadOptions()).prepare(partition, bundle)
    with pytest.raises(InputError, match="'x'"):
        executable.run({"x": np.zeros((4, 31), np.float32)})
    with pytest.raises(InputError, match="missing"):
        executable.run({})
    program = json.loads((tmp_path / "p1.npu.json").read_text())
    hostile = {
        "device": ({"device": "npu9"}, "'device' = 'npu9' is not one of npu, npu2"),
        "segments": ({"segments": [{"steps": [0, 0], "context_switch_ms": 0, "host_sync_ms": 0.1}]}, "segments"),
        "negative": ({"segments": [{"steps": [0], "context_switch_ms": -1, "host_sync_ms": 0.1}]}, "non-negative"),
        "launch": ({"launch": {"cold_start_ms": 1}}, "runlist_entry_ms"),
        "weight dtype": ({"weights": {"k": {"offset": 0, "shape": [1], "dtype": "float64"}}}, "'dtype'"),
    }
    for name, (change, message) in hostile.items():
        (tmp_path / "p1.npu.json").write_text(json.dumps({**program, **change}))
        with pytest.raises(BundleError, match=message):
            NpuSimBackend.open(LoadOptions()).prepare(partition, bundle)
        assert name


def test_hostile_steps_are_refused_in_one_line(tmp_path):
    nodes, inputs, consts = CASES["matmul-bias-gelu-residual"]
    model = make_model(nodes, inputs, consts, ["y"])
    partition, bundle = write_bundle(to_ir(model), tmp_path)
    program = json.loads((tmp_path / "p1.npu.json").read_text())
    feeds = {"x": _w(*inputs["x"])}

    def broken(change) -> dict:
        steps = json.loads(json.dumps(program["steps"]))
        change(steps[0])
        return {**program, "steps": steps}

    bad_epilogue = broken(lambda s: s["kernel"]["epilogue"].append({"kind": "fft"}))
    (tmp_path / "p1.npu.json").write_text(json.dumps(bad_epilogue))
    executable = NpuSimBackend.open(LoadOptions()).prepare(partition, bundle)
    with pytest.raises(BundleError, match="unknown NPU epilogue 'fft'"):
        executable.run(feeds)
    for change, message in (
        (lambda s: s.update(simulated_ms="slow"), "simulated_ms is not a number"),
        (lambda s: s["kernel"].update(kernel="fft"), "unknown kernel 'fft'"),
    ):
        (tmp_path / "p1.npu.json").write_text(json.dumps(broken(change)))
        with pytest.raises(BundleError, match=message):
            NpuSimBackend.open(LoadOptions()).prepare(partition, bundle).run(feeds)
