"""GPU ops through codegen.gpu.emit and the Vulkan backend (lavapipe here), checked against onnxruntime."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from gpu_harness import Builder, backend, check, prepare, random_feeds, reference, run_gpu
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codegen.gpu import emit
from ragc.bundle.single import single_partition
from runtime_min.errors import BackendUnavailable, BundleError, InputError


@pytest.fixture(scope="module")
def be():
    b = backend({"timestamps": True})
    yield b
    b.close()


UNARY = ["Relu", "Sigmoid", "Tanh", "Erf", "Exp", "Abs", "Neg", "HardSwish", "Floor", "Ceil", "Softplus", "Reciprocal"]


@pytest.mark.parametrize("op_type", UNARY)
def test_unary(be, op_type):
    b = Builder()
    y = b.op(op_type, [b.input("x", (2, 3, 5, 7))], (2, 3, 5, 7))
    check(b.graph([y]), be)


@pytest.mark.parametrize("op_type", ["Sqrt", "Log"])
def test_positive_domain(be, op_type):
    b = Builder()
    x = b.input("x", (3, 33))
    y = b.op(op_type, [b.op("Exp", [x], (3, 33))], (3, 33))
    check(b.graph([y]), be)


@pytest.mark.parametrize("op_type", ["Add", "Sub", "Mul", "Div", "Max", "Min"])
@pytest.mark.parametrize("shapes", [((4, 5), (4, 5)), ((2, 3, 4, 5), (3, 1, 5)), ((1, 6), (7, 1)), ((5,), ())])
def test_binary_broadcast(be, op_type, shapes):
    b = Builder()
    out = tuple(np.broadcast_shapes(*shapes))
    y = b.op(op_type, [b.input("a", shapes[0]), b.input("c", shapes[1])], out)
    check(b.graph([y]), be)


@pytest.mark.parametrize("exponent", [2.0, 3.0, 0.5, -1.0])
def test_pow_constant_exponent(be, exponent):
    b = Builder()
    x = b.input("x", (4, 9))
    base = b.op("Abs", [x], (4, 9)) if exponent == 0.5 else x
    y = b.op("Pow", [base, b.const("e", np.float32(exponent))], (4, 9))
    check(b.graph([y]), be)


@pytest.mark.parametrize(
    ("op_type", "attrs"),
    [
        ("LeakyRelu", {"alpha": 0.2}),
        ("LeakyRelu", {}),
        ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}),
        ("Gelu", {}),
        ("Gelu", {"approximate": "tanh"}),
    ],
)
def test_unary_attributes(be, op_type, attrs):
    b = Builder()
    y = b.op(op_type, [b.input("x", (3, 50))], (3, 50), **attrs)
    check(b.graph([y]), be)


@pytest.mark.parametrize("bounds", [(-0.5, 0.5), (0.0, None), (None, 6.0)])
def test_clip(be, bounds):
    b = Builder()
    lo = b.const("lo", np.float32(bounds[0])) if bounds[0] is not None else ""
    hi = b.const("hi", np.float32(bounds[1])) if bounds[1] is not None else ""
    y = b.op("Clip", [b.input("x", (4, 17)), lo, hi], (4, 17))
    check(b.graph([y]), be)


@pytest.mark.parametrize("op_type", ["Equal", "Less", "Greater"])
def test_compare_gives_bool(be, op_type):
    b = Builder()
    x = b.input("x", (5, 6))
    y = b.op(op_type, [b.op("Floor", [x], (5, 6)), b.input("z", (6,))], (5, 6), dtype="bool")
    check(b.graph([y]), be)


def test_where_with_bool_input(be):
    b = Builder()
    y = b.op("Where", [b.input("c", (4, 1), "bool"), b.input("x", (4, 7)), b.weight("w", (7,))], (4, 7))
    check(b.graph([y]), be)


@pytest.mark.parametrize("op_type", ["Sum", "Mean", "Max", "Min"])
def test_variadic(be, op_type):
    b = Builder()
    ins = [b.input("a", (2, 3, 4)), b.input("c", (3, 1)), b.weight("w", (4,))]
    check(b.graph([b.op(op_type, ins, (2, 3, 4))]), be)


@pytest.mark.parametrize(
    ("a", "c", "out"),
    [
        ((5, 7), (7, 3), (5, 3)),
        ((2, 3, 33, 20), (20, 70), (2, 3, 33, 70)),
        ((3, 1, 16, 8), (4, 8, 12), (3, 4, 16, 12)),
        ((8,), (8, 5), (5,)),
        ((4, 6), (6,), (4,)),
        ((130, 64), (64, 256), (130, 256)),
        ((8, 256, 60), (60, 520), (8, 256, 520)),
    ],
)
def test_matmul(be, a, c, out):
    b = Builder()
    check(b.graph([b.op("MatMul", [b.input("a", a), b.input("c", c)], out)]), be)


@pytest.mark.parametrize("trans_a", [0, 1])
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("bias_shape", [(45,), (37, 1), None])
def test_gemm(be, trans_a, trans_b, bias_shape):
    b = Builder()
    m, k, n = 37, 29, 45
    ins = [b.input("a", (k, m) if trans_a else (m, k)), b.weight("w", (n, k) if trans_b else (k, n))]
    ins += [b.weight("bias", bias_shape)] if bias_shape else []
    y = b.op("Gemm", ins, (m, n), transA=trans_a, transB=trans_b, alpha=0.7, beta=1.3)
    check(b.graph([y]), be)


def _conv_graph(x, w, out, bias, act, **attrs):
    b = Builder()
    ins = [b.input("x", x), b.weight("w", w, 0.3)] + ([b.weight("b", (w[0],))] if bias else [])
    y = b.op("Conv", ins, out, kernel_shape=list(w[2:]), **attrs)
    if act == "relu":
        y = b.op("Relu", [y], out)
    elif act == "clip":
        y = b.op("Clip", [y, b.const("lo", np.float32(0)), b.const("hi", np.float32(6))], out)
    elif act == "silu":
        y = b.op("Mul", [y, b.op("Sigmoid", [y], out)], out)
    elif act:
        y = b.op(act, [y], out)
    return b.graph([y])


CONVS = [
    ((1, 3, 9, 9), (16, 3, 3, 3), (1, 16, 9, 9), {"pads": [1, 1, 1, 1]}, "relu"),
    ((2, 8, 10, 7), (32, 8, 3, 3), (2, 32, 4, 3), {"strides": [2, 2]}, "clip"),
    ((1, 16, 8, 8), (16, 1, 3, 3), (1, 16, 8, 8), {"group": 16, "pads": [1, 1, 1, 1]}, "HardSwish"),
    ((1, 8, 11, 11), (32, 4, 3, 3), (1, 32, 11, 11), {"group": 2, "auto_pad": "SAME_UPPER"}, "silu"),
    ((1, 4, 11, 11), (8, 4, 3, 3), (1, 8, 6, 6), {"strides": [2, 2], "auto_pad": "SAME_LOWER"}, "Sigmoid"),
    ((1, 4, 12, 12), (20, 4, 3, 3), (1, 20, 8, 8), {"dilations": [2, 2]}, None),
    ((1, 4, 12, 12), (20, 4, 1, 1), (1, 20, 12, 12), {}, "LeakyRelu"),
    ((2, 6, 20), (24, 3, 5), (2, 24, 10), {"group": 2, "strides": [2], "pads": [2, 2]}, "relu"),
    ((1, 3, 7, 7), (5, 3, 3, 3), (1, 5, 5, 5), {"auto_pad": "VALID"}, None),
]


@pytest.mark.parametrize(("x", "w", "out", "attrs", "act"), CONVS)
@pytest.mark.parametrize("bias", [True, False])
def test_conv(be, x, w, out, attrs, act, bias):
    check(_conv_graph(x, w, out, bias, act, **attrs), be)


POOLS = [
    ("MaxPool", (1, 3, 8, 8), (1, 3, 4, 4), {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ("MaxPool", (1, 3, 9, 9), (1, 3, 5, 5), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("MaxPool", (1, 3, 10, 10), (1, 3, 5, 5), {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    ("MaxPool", (1, 2, 10, 10), (1, 2, 6, 6), {"kernel_shape": [3, 3], "dilations": [2, 2]}),
    ("MaxPool", (1, 2, 11, 11), (1, 2, 4, 4), {"kernel_shape": [3, 3], "strides": [3, 3], "auto_pad": "SAME_UPPER"}),
    ("MaxPool", (2, 3, 20), (2, 3, 10), {"kernel_shape": [2], "strides": [2]}),
    ("AveragePool", (1, 3, 9, 9), (1, 3, 5, 5), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    (
        "AveragePool",
        (1, 3, 9, 9),
        (1, 3, 5, 5),
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1},
    ),
    ("AveragePool", (1, 3, 10, 10), (1, 3, 5, 5), {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    (
        "AveragePool",
        (1, 3, 10, 10),
        (1, 3, 6, 6),
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1, "count_include_pad": 1},
    ),
    (
        "AveragePool",
        (1, 3, 11, 11),
        (1, 3, 6, 6),
        {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_LOWER"},
    ),
    ("GlobalAveragePool", (2, 5, 7, 7), (2, 5, 1, 1), {}),
    ("GlobalAveragePool", (1, 3, 40, 40), (1, 3, 1, 1), {}),  # a workgroup per plane (ops/pool.py _plane_mean)
    ("GlobalMaxPool", (2, 5, 7, 6), (2, 5, 1, 1), {}),
    ("LRN", (1, 10, 5, 5), (1, 10, 5, 5), {"size": 5, "alpha": 1e-3, "beta": 0.75, "bias": 2.0}),
    ("LRN", (2, 7, 3, 4), (2, 7, 3, 4), {"size": 3}),
]


@pytest.mark.parametrize(("op_type", "x", "out", "attrs"), POOLS)
def test_pool_and_lrn(be, op_type, x, out, attrs):
    b = Builder()
    check(b.graph([b.op(op_type, [b.input("x", x)], out, **attrs)]), be)


def _small_net() -> tuple:
    """conv+bias+relu, a residual add fused into a second conv, pooling, flatten, gemm+sigmoid, two outputs."""
    b = Builder()
    x = b.input("x", (1, 3, 16, 16))
    c1 = b.op(
        "Relu",
        [
            b.op(
                "Conv",
                [x, b.weight("w1", (16, 3, 3, 3), 0.3), b.weight("b1", (16,))],
                (1, 16, 16, 16),
                kernel_shape=[3, 3],
                pads=[1, 1, 1, 1],
            )
        ],
        (1, 16, 16, 16),
    )
    c2 = b.op("Conv", [c1, b.weight("w2", (16, 16, 1, 1), 0.3)], (1, 16, 16, 16), kernel_shape=[1, 1])
    r = b.op("Relu", [b.op("Add", [c2, c1], (1, 16, 16, 16))], (1, 16, 16, 16))
    p = b.op("MaxPool", [r], (1, 16, 8, 8), kernel_shape=[2, 2], strides=[2, 2])
    g = b.op("GlobalAveragePool", [p], (1, 16, 1, 1))
    f = b.op("Flatten", [g], (1, 16), axis=1)
    y = b.op(
        "Sigmoid", [b.op("Gemm", [f, b.weight("wf", (10, 16)), b.weight("bf", (10,))], (1, 10), transB=1)], (1, 10)
    )
    return b.graph([y, p]), y


def test_small_net_fuses_and_matches(be):
    graph, _ = _small_net()
    check(graph, be)
    program = emit(graph, "p1")
    dispatches = json.loads(program.files["p1.gpu.json"])["dispatches"]
    assert len(dispatches) == 5  # conv+relu, conv+add+relu, maxpool, global pool, gemm+sigmoid


def test_runs_are_bit_identical_and_timed(be):
    graph, y = _small_net()
    feeds = random_feeds(graph)
    artifact = emit(graph, "p1")
    with tempfile.TemporaryDirectory() as tmp:
        exe = prepare(be, artifact, graph, Path(tmp))
    first, second = exe.run(feeds), exe.run(feeds)
    timings = exe.timings()
    exe.close()
    assert all(np.array_equal(first[k], second[k]) for k in first)
    assert [t.label for t in timings] == [d["label"] for d in json.loads(artifact.files["p1.gpu.json"])["dispatches"]]
    assert all(t.duration_ns >= 0 for t in timings)
    np.testing.assert_allclose(first[y], reference(graph, feeds)[y], rtol=1e-4, atol=1e-5)


def test_alias_only_partition(be):
    b = Builder()
    x = b.input("x", (2, 6))
    y = b.op("Reshape", [x, b.const("s", [3, 4], "int64")], (3, 4))
    feeds = random_feeds(b.graph([y]))
    assert np.array_equal(run_gpu(b.graph([y]), feeds, be)[y], feeds["x"].reshape(3, 4))


def test_bad_feeds_raise_input_error(be):
    b = Builder()
    graph = b.graph([b.op("Relu", [b.input("x", (2, 3))], (2, 3))])
    with pytest.raises(InputError, match="expected float32"):
        run_gpu(graph, {"x": np.zeros((2, 3), np.float64)}, be)
    with pytest.raises(InputError, match="input .x. is missing"):
        run_gpu(graph, {}, be)


def test_a_program_that_is_not_a_gpu_program_raises_bundle_error(be, tmp_path):
    b = Builder()
    graph = b.graph([b.op("Relu", [b.input("x", (2, 3))], (2, 3))])
    artifact = emit(graph, "p1")
    artifact.files["p1.gpu.json"] = b'{"version": 1}'
    with pytest.raises(BundleError, match="'version' = 1 is outside"):
        prepare(be, artifact, graph, tmp_path)


def test_describe_and_memory_attributes(be):
    assert be.device == "gpu" and be.device_name in be.describe()
    assert isinstance(be.unified_memory, bool) and isinstance(be.has_external_memory_host, bool)


def test_unknown_device_name_is_unavailable(be, monkeypatch):
    from runtime_min.backends.vulkan import VulkanBackend
    from runtime_min.options import LoadOptions

    monkeypatch.setenv("RAGC_VULKAN_DEVICE", "no-such-gpu-anywhere")
    with pytest.raises(BackendUnavailable, match="no Vulkan device matches"):
        VulkanBackend(LoadOptions.make({}))


BINARY_OPS = ["Add", "Sub", "Mul", "Max", "Min"]
UNARY_OPS = ["Relu", "Sigmoid", "Tanh", "Neg", "Abs", "HardSwish", "Erf"]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_elementwise_dags_fuse_correctly(be, data):
    """Random DAGs of elementwise ops over broadcastable inputs (some values read twice) match onnxruntime."""
    b = Builder()
    shape = (2, 3, 4)
    values = [(b.input("x", shape), shape), (b.input("y", (3, 1)), (3, 1)), (b.weight("w", (4,)), (4,))]
    for _ in range(data.draw(st.integers(2, 7))):
        if data.draw(st.booleans()):
            src = data.draw(st.sampled_from(values))
            values.append((b.op(data.draw(st.sampled_from(UNARY_OPS)), [src[0]], src[1]), src[1]))
        else:
            lhs, rhs = data.draw(st.sampled_from(values)), data.draw(st.sampled_from(values))
            out = tuple(np.broadcast_shapes(lhs[1], rhs[1]))
            values.append((b.op(data.draw(st.sampled_from(BINARY_OPS)), [lhs[0], rhs[0]], out), out))
    outputs = list(dict.fromkeys([values[-1][0], data.draw(st.sampled_from(values[3:]))[0]]))
    check(b.graph(outputs), be)


def test_missing_kernel_file_raises_bundle_error(be, tmp_path):
    b = Builder()
    graph = b.graph([b.op("Relu", [b.input("x", (2, 3))], (2, 3))])
    artifact = emit(graph, "p1")
    kernel = next(name for name in artifact.files if name.endswith(".spv"))
    part, bundle = single_partition(artifact, graph, tmp_path, "gpu")
    (tmp_path / kernel).unlink()
    with pytest.raises(BundleError, match=f"{kernel}' is missing"):
        be.prepare(part, bundle)


def test_compare_and_where_fuse_into_one_kernel(be):
    b = Builder()
    x = b.input("x", (3, 8))
    y = b.op("Where", [b.op("Greater", [x, b.input("t", (8,))], (3, 8), "bool"), x, b.op("Neg", [x], (3, 8))], (3, 8))
    graph = b.graph([y])
    check(graph, be)
    assert len(json.loads(emit(graph, "p1").files["p1.gpu.json"])["dispatches"]) == 1


def test_pipeline_cache_is_written_at_load_not_only_at_close(tmp_path, monkeypatch):
    """An app that never closes its plan still leaves the pipeline cache for its next start."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fresh = backend()
    b = Builder()
    graph = b.graph([b.op("Sigmoid", [b.op("Relu", [b.input("x", (4, 8))], (4, 8))], (4, 8))])
    prepare(fresh, emit(graph, "p1"), graph, tmp_path)
    (written,) = (tmp_path / "cache" / "ragc" / "vulkan").iterdir()
    before = written.stat()
    fresh.close()
    assert written.stat().st_mtime_ns == before.st_mtime_ns or written.stat().st_size > before.st_size
