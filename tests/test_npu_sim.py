"""The simulated NPU: bf16 numerics against onnxruntime, the XDNA timing model, and the sim backend's errors.

Tolerance (npu_fixtures.assert_close_bf16): rtol 2e-2 plus atol 1e-2 of the output's largest magnitude, since
operands are rounded to bf16 (relative step 2^-8) and GEMMs accumulate in fp32.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from npu_fixtures import assert_close_bf16, make_model, run_ort, to_ir, write_bundle
from onnx import helper

from ragc.costmodel.npu import XDNA2_DEFAULTS, XdnaTiming
from ragc.errors import PersonalityError
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


CASES = {
    "matmul-3d": ([_node("MatMul", ["x", "w"])], {"x": (2, 5, 70)}, {"w": _w(70, 33)}),
    "matmul-runtime-b": ([_node("MatMul", ["x", "z"])], {"x": (9, 20), "z": (20, 130)}, {}),
    "gemm-trans-bias": (
        [_node("Gemm", ["x", "w", "b"], transA=1, transB=1, alpha=0.5, beta=2.0)],
        {"x": (70, 5)},
        {"w": _w(33, 70), "b": _w(33)},
    ),
    "conv-stride-pad-bias": (
        [_node("Conv", ["x", "w", "b"], pads=[1, 2, 1, 0], strides=[2, 1])],
        {"x": (2, 3, 9, 8)},
        {"w": _w(8, 3, 3, 3), "b": _w(8)},
    ),
    "conv-dilated": ([_node("Conv", ["x", "w"], dilations=[2, 2])], {"x": (1, 4, 10, 10)}, {"w": _w(6, 4, 3, 3)}),
    "conv-1x1": ([_node("Conv", ["x", "w"])], {"x": (1, 16, 5, 5)}, {"w": _w(32, 16, 1, 1)}),
    "add-broadcast": ([_node("Add", ["x", "z"])], {"x": (2, 3, 40), "z": (40,)}, {}),
    "mul-const": ([_node("Mul", ["x", "s"])], {"x": (2, 3, 40)}, {"s": _w(3, 1)}),
    "relu": ([_node("Relu", ["x"])], {"x": (4, 300)}, {}),
    "gelu-erf": ([_node("Gelu", ["x"])], {"x": (4, 300)}, {}),
    "gelu-tanh": ([_node("Gelu", ["x"], approximate="tanh")], {"x": (4, 300)}, {}),
    "sigmoid": ([_node("Sigmoid", ["x"])], {"x": (4, 300)}, {}),
    "tanh": ([_node("Tanh", ["x"])], {"x": (4, 300)}, {}),
    "swish": ([_node("Swish", ["x"])], {"x": (4, 300)}, {}),
    "softmax": ([_node("Softmax", ["x"], axis=-1)], {"x": (3, 2, 100)}, {}),
    "conv-relu-matmul-softmax": (
        [
            _node("Conv", ["x", "w", "b"], "c", pads=[1, 1, 1, 1]),
            _node("Relu", ["c"], "r"),
            _node("MatMul", ["r", "m"], "mm"),
            _node("Softmax", ["mm"], "y"),
        ],
        {"x": (1, 3, 6, 6)},
        {"w": _w(4, 3, 3, 3), "b": _w(4), "m": _w(6, 10)},
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


def test_timing_is_monotone_in_size():
    t = XdnaTiming.from_params()
    gemm = [t.kernel_ms("matmul", s, s, s) for s in (64, 128, 256, 512, 1024, 2048)]
    relu = [t.kernel_ms("relu", n) for n in (1024, 4096, 1 << 16, 1 << 20)]
    assert gemm == sorted(gemm) and gemm[0] < gemm[-1]
    assert relu == sorted(relu) and relu[0] < relu[-1]
    assert t.kernel_ms("matmul", 256, 512, 256) < t.kernel_ms("matmul", 256, 1024, 256)


@pytest.mark.parametrize(
    "params", [None, {"arch": "xdna", "tiles": 16, "clock_ghz": 1.0, "measured_bf16_gemm_tflops": 3.0}]
)
def test_large_gemm_lands_on_the_measured_tflops(params):
    t = XdnaTiming.from_params(params)
    n = 4096
    tflops = 2 * n**3 / (t.kernel_ms("matmul", n, n, n) * 1e-3) / 1e12
    assert tflops == pytest.approx(t.measured_bf16_gemm_tflops, rel=0.05)
    assert t.kernel_ms("matmul", 64, 64, 64) >= t.dispatch_us / 1e3  # small kernels pay the dispatch


def test_cold_start_after_idle_only():
    t = XdnaTiming.from_params()
    warm = t.kernel_ms("relu", 4096)
    assert t.kernel_ms("relu", 4096, idle_ms=t.idle_power_down_ms) == pytest.approx(warm + t.cold_start_ms)
    assert t.kernel_ms("relu", 4096, idle_ms=t.idle_power_down_ms / 2) == warm


def test_sim_timings_are_simulated_and_cold_once(tmp_path):
    nodes, inputs, consts = CASES["conv-relu-matmul-softmax"]
    model = make_model(nodes, inputs, consts, ["y"])
    executable, _ = _simulate(model, {"x": _w(*inputs["x"])}, tmp_path, target_npu=XDNA2_DEFAULTS)
    first = executable.timings()
    assert [s.label.split(":")[-1].split()[0] for s in first] == [
        "cold_start",
        "host_sync",
        "matmul",
        "relu",
        "matmul",
        "softmax",
    ]
    assert all(s.simulated for s in first)
    assert all(a.start_ns + a.duration_ns == b.start_ns for a, b in zip(first, first[1:], strict=False))
    executable.run({"x": _w(*inputs["x"])})
    second = executable.timings()
    assert second[0].label == "host_sync" and second[0].start_ns == first[-1].start_ns + first[-1].duration_ns


def test_timing_comes_from_the_partition_meta(tmp_path):
    model = make_model([_node("Relu", ["x"])], {"x": (4, 300)}, {}, ["y"])
    slow = {**XDNA2_DEFAULTS, "dispatch_us": 5000.0}
    executable, _ = _simulate(model, {"x": _w(4, 300)}, tmp_path, target_npu=slow)
    assert executable.timings()[-1].duration_ns >= 5_000_000


def test_bad_timing_parameters_are_refused():
    with pytest.raises(PersonalityError, match="arch"):
        XdnaTiming.from_params({"arch": "tpu"})
    with pytest.raises(PersonalityError, match="clock_ghz"):
        XdnaTiming.from_params({"clock_ghz": -1})
    with pytest.raises(ValueError, match="no timing model"):
        XdnaTiming.from_params().kernel_ms("fft", 10)


def test_target_files_npu_sections_load():
    for path in sorted(Path(__file__).parents[1].glob("ragc/targets/*.json")):
        section = json.loads(path.read_text()).get("npu")
        if section:
            t = XdnaTiming.from_params(section)
            assert math.isfinite(t.kernel_ms("matmul", 1024, 1024, 1024)), path.name


def test_sim_rejects_bad_feeds_and_bundles(tmp_path):
    model = make_model([_node("Relu", ["x"])], {"x": (4, 30)}, {}, ["y"])
    partition, bundle = write_bundle(to_ir(model), tmp_path)
    executable = NpuSimBackend.open(LoadOptions()).prepare(partition, bundle)
    with pytest.raises(InputError, match="'x'"):
        executable.run({"x": np.zeros((4, 31), np.float32)})
    with pytest.raises(InputError, match="missing"):
        executable.run({})
    (tmp_path / "p1.npu.json").write_text('{"device": "npu9", "weights": {}}')
    with pytest.raises(BundleError, match="'device' = 'npu9' is not one of npu, npu2"):
        NpuSimBackend.open(LoadOptions()).prepare(partition, bundle)
