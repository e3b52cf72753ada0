"""NaN, +-Inf and -0.0 through every GPU op, compared with onnxruntime (KERNELS.md, "NaN, Inf, -0.0 and
denormals"): NaN positions always equal; ops onnxruntime computes exactly (comparisons, selections, copies, Max,
Min, Clip, Relu, Floor, Casts, one IEEE add or multiply, fmod, MaxPool, the index ops) bit for bit apart from NaN
payloads; the others equal at every +-Inf and +-0 onnxruntime gives, and within rtol 1e-4 / atol 1e-5 elsewhere.
Plus the denormal rule of lavapipe (kept, as onnxruntime keeps them)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from gpu_harness import Builder, backend, reference, run_gpu
from onnx import helper

SPECIALS = np.array(
    [np.nan, -np.nan, np.inf, -np.inf, -0.0, 0.0, 1.5, -1.5, 0.5, -0.5, 3.0, -2.0, 100.0, -100.0, 7.25, 1e-3],
    np.float32,
)
N = len(SPECIALS)


@pytest.fixture(scope="module")
def be():
    b = backend()
    yield b
    b.close()


def assert_specials(got: np.ndarray, want: np.ndarray, exact: bool, zero_signs: bool = True) -> None:
    """NaN positions equal; `exact`: every other value bit for bit; else +-Inf (and, with `zero_signs`, +-0)
    bit for bit and the rest within tolerance. Without `zero_signs` -0.0 and +0.0 count as equal."""
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, want.dtype, got.shape, want.shape)
    if want.dtype.kind != "f":
        np.testing.assert_array_equal(got, want)
        return
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan, err_msg="NaN positions differ")
    bits = lambda a: a.view(np.uint32 if a.dtype == np.float32 else np.uint16)  # noqa: E731
    pinned = ~nan if exact else ~nan & (((want == 0) & zero_signs) | np.isinf(want))
    if not zero_signs:
        pinned &= want != 0
        np.testing.assert_array_equal(got[want == 0], 0)
    np.testing.assert_array_equal(bits(got)[pinned], bits(want)[pinned], err_msg="values differ bit for bit")
    np.testing.assert_allclose(got[~nan], want[~nan], rtol=1e-4, atol=1e-5)


def run_case(
    be,
    build: Callable[[Builder], list[str]],
    exact: bool,
    feeds: dict | None = None,
    zero_signs: bool = True,
    opset: int | None = None,
) -> None:
    b = Builder()
    outs = build(b)
    g = b.graph(outs)
    g.opset = opset or g.opset
    feeds = feeds or {n: _special_feed(g.tensors[n].shape, g.tensors[n].dtype) for n in g.inputs}
    got, want = run_gpu(g, feeds, be), reference(g, feeds)
    for name in outs:
        assert_specials(got[name], want[name], exact, zero_signs)


def _special_feed(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    if dtype == "bool":
        return np.random.default_rng(0).random(shape) < 0.5
    return np.resize(SPECIALS, shape).astype(dtype)


EXACT_UNARY = ["Relu", "Abs", "Neg", "Sign", "Floor", "Ceil", "Round", "LeakyRelu", "IsNaN", "IsInf"]
ROUNDED_UNARY = ["Sqrt", "Exp", "Log", "Sigmoid", "Tanh", "Erf", "Gelu", "Softplus", "Reciprocal", "Sin", "Cos"]
ROUNDED_UNARY += ["HardSigmoid", "HardSwish"]  # a * x + b may be one fused multiply-add on the GPU


@pytest.mark.parametrize("op_type", EXACT_UNARY + ROUNDED_UNARY)
def test_unary(be, op_type):
    dtype = "bool" if op_type in ("IsNaN", "IsInf") else "float32"
    run_case(be, lambda b: [b.op(op_type, [b.input("x", (2, N))], (2, N), dtype)], op_type in EXACT_UNARY)


def test_gelu_tanh_and_isinf_one_sided(be):
    def build(b):
        x = b.input("x", (2, N))
        return [
            b.op("Gelu", [x], (2, N), approximate="tanh"),
            b.op("IsInf", [x], (2, N), "bool", detect_negative=0),
            b.op("IsInf", [x], (2, N), "bool", detect_positive=0),
        ]

    run_case(be, build, exact=False)


BINARY = {
    "Add": ("float32", True),
    "Sub": ("float32", True),
    "Mul": ("float32", True),
    "Div": ("float32", False),  # Vulkan's division is within 2.5 ulp, not correctly rounded
    "Pow": ("float32", False),
    "Max": ("float32", True),
    "Min": ("float32", True),
    "Sum": ("float32", True),
    "Mean": ("float32", False),
    "Equal": ("bool", True),
    "Less": ("bool", True),
    "Greater": ("bool", True),
    "LessOrEqual": ("bool", True),
    "GreaterOrEqual": ("bool", True),
}


@pytest.mark.parametrize("op_type", sorted(BINARY))
def test_binary_all_pairs(be, op_type):
    """Max/Min of -0.0 and +0.0: onnxruntime's choice depends on its broadcast path, so zeros compare as equal."""
    dtype, exact = BINARY[op_type]
    build = lambda b: [b.op(op_type, [b.input("a", (N, 1)), b.input("b", (1, N))], (N, N), dtype)]  # noqa: E731
    run_case(be, build, exact, zero_signs=op_type not in ("Max", "Min"))


def test_fmod_all_pairs(be):
    run_case(be, lambda b: [b.op("Mod", [b.input("a", (N, 1)), b.input("b", (1, N))], (N, N), fmod=1)], exact=True)


@pytest.mark.parametrize("bounds", [(-1.0, 1.0), (0.0, None), (None, 2.0), (None, None)])
def test_clip(be, bounds):
    def build(b):
        lo, hi = (b.const(name, np.float32(v)) if v is not None else "" for name, v in zip("lh", bounds, strict=True))
        return [b.op("Clip", [b.input("x", (2, N)), lo, hi], (2, N))]

    run_case(be, build, exact=True)


@pytest.mark.parametrize("dst", ["int64", "int32", "bool", "float16"])
def test_cast_of_specials(be, dst):
    to = int(helper.np_dtype_to_tensor_dtype(np.dtype(dst)))
    run_case(be, lambda b: [b.op("Cast", [b.input("x", (2, N))], (2, N), dst, to=to)], exact=True)


def test_where_and_copies(be):
    def build(b):
        x = b.input("x", (4, N))
        w = b.op("Where", [b.input("c", (4, 1), "bool"), x, b.op("Neg", [x], (4, N))], (4, N))
        t = b.op("Transpose", [x], (N, 4), perm=[1, 0])
        c = b.op("Concat", [x, x], (4, 2 * N), axis=1)
        s = b.op(
            "Slice",
            [x, b.const("st", np.array([1])), b.const("en", np.array([9])), b.const("ax", np.array([1]))],
            (4, 8),
        )
        gathered = b.op("Gather", [x, b.const("idx", np.array([3, 0, 15, 4]))], (4, 4), axis=1)
        pad = b.op("Pad", [x, b.const("pads", np.array([0, 2, 0, 1]))], (4, N + 3), mode="reflect")
        tri = b.op("Trilu", [x], (4, N))
        tile = b.op("Tile", [x, b.const("reps", np.array([1, 2]))], (4, 2 * N))
        ge = b.op("GatherElements", [x, b.const("ge", np.resize(np.arange(N)[::-1], (4, N)).copy())], (4, N), axis=1)
        return [w, t, c, s, gathered, pad, tri, tile, ge]

    run_case(be, build, exact=True)


def _rows() -> np.ndarray:
    """Rows of 16: NaN first (where onnxruntime's Max/Min propagate it), NaN inside, +-Inf, -Inf only, -0.0.
    Their arithmetic results' zero signs depend on the order of operations, so those compare as equal."""
    rows = np.resize(np.linspace(-3, 3, N, dtype=np.float32), (6, N))
    rows[0, 0] = np.nan
    rows[1, 5] = np.nan
    rows[2, [2, 9]] = [np.inf, -np.inf]
    rows[3, :] = -np.inf
    rows[4, :] = -0.0
    rows[5, 7] = np.inf
    return rows


@pytest.mark.parametrize(
    "op_type", ["ReduceSum", "ReduceMean", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceSumSquare"]
)
def test_reductions(be, op_type):
    build = lambda b: [b.op(op_type, [b.input("x", (6, N)), b.const("axes", np.array([1]))], (6, 1))]  # noqa: E731
    run_case(be, build, exact=False, feeds={"x": _rows()}, zero_signs=False)


@pytest.mark.parametrize("op_type", ["ReduceMax", "ReduceMin", "ArgMax", "ArgMin"])
def test_max_min_reductions(be, op_type):
    """onnxruntime's ReduceMax/Min give NaN for a NaN in the row only at SIMD-dependent positions (always at
    position 0); the GPU always propagates it, so the row with a NaN inside is compared only for Arg*."""
    rows = _rows() if op_type.startswith("Arg") else np.delete(_rows(), 1, axis=0)
    dtype = "int64" if op_type.startswith("Arg") else "float32"

    def build(b):
        x = b.input("x", rows.shape)
        if dtype == "int64":
            return [b.op(op_type, [x], (len(rows), 1), dtype, axis=1)]
        return [b.op(op_type, [x, b.const("axes", np.array([1]))], (len(rows), 1))]

    run_case(be, build, exact=True, feeds={"x": rows})


def test_softmax_and_layernorm(be):
    def build(b):
        x = b.input("x", (6, N))
        return [
            b.op("Softmax", [x], (6, N), axis=-1),
            b.op("LayerNormalization", [x, b.weight("s", (N,))], (6, N), epsilon=1e-5),
        ]

    run_case(be, build, exact=False, feeds={"x": _rows()}, zero_signs=False)


def test_pooling(be):
    x = _rows().reshape(1, 6, 4, 4)

    def build(b):
        xi = b.input("x", x.shape)
        return [
            b.op("MaxPool", [xi], (1, 6, 2, 2), kernel_shape=[2, 2], strides=[2, 2]),
            b.op("MaxPool", [xi], (1, 6, 4, 4), kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
            b.op("GlobalMaxPool", [xi], (1, 6, 1, 1)),
            b.op("AveragePool", [xi], (1, 6, 2, 2), kernel_shape=[2, 2], strides=[2, 2]),
        ]

    run_case(be, build, exact=False, feeds={"x": x}, zero_signs=False)


def test_gemm_and_conv_propagate(be):
    x = _rows()

    def build(b):
        xi = b.input("x", x.shape)
        mm = b.op("MatMul", [xi, b.weight("w", (N, 5))], (6, 5))
        gemm = b.op("Gemm", [xi, b.weight("g", (3, N)), b.weight("bias", (3,))], (6, 3), transB=1)
        conv = b.op(
            "Conv",
            [
                b.op("Reshape", [xi, b.const("shape", np.array([1, 6, 4, 4]))], (1, 6, 4, 4)),
                b.weight("k", (4, 6, 3, 3)),
            ],
            (1, 4, 2, 2),
            kernel_shape=[3, 3],
        )
        return [mm, gemm, conv]

    run_case(be, build, exact=False, feeds={"x": x}, zero_signs=False)


def test_transformer_ops_propagate(be):
    """CumSum, Einsum, RMSNormalization, RotaryEmbedding and Attention (opset 23) on rows with NaN, +-Inf and
    -0.0. (Linear Resize is left out: whether onnxruntime multiplies a NaN or Inf neighbour of weight 0 depends on
    the kernel it picks; KERNELS.md lists it.)"""
    x = _rows()
    angles = np.linspace(-3, 3, 48, dtype=np.float32).reshape(6, 8)

    def build(b):
        xi = b.input("x", x.shape)
        x4 = b.op("Reshape", [xi, b.const("s4", np.array([1, 2, 3, N]))], (1, 2, 3, N))
        cos, sin = b.const("cos", np.cos(angles)), b.const("sin", np.sin(angles))
        pos = b.const("pos", np.array([[0, 2, 5]]))
        return [
            b.op("CumSum", [xi, b.const("axis", np.int64(1))], x.shape),
            b.op("Einsum", [xi, b.weight("e", (N, 3))], (6, 3), equation="ij,jk->ik"),
            b.op("RMSNormalization", [xi, b.weight("g", (N,))], x.shape),
            b.op("RotaryEmbedding", [x4, cos, sin, pos], (1, 2, 3, N)),
            b.op("Attention", [x4, x4, x4], (1, 2, 3, N)),
        ]

    run_case(be, build, exact=False, feeds={"x": x}, zero_signs=False, opset=23)


def test_denormals_on_lavapipe(be):
    """lavapipe keeps denormals through arithmetic and copies, as onnxruntime does on the CPU (other devices may
    flush them: KERNELS.md gives the rule per device)."""
    if "llvmpipe" not in be.device_name:
        pytest.skip(f"the denormal rule checked here is lavapipe's; this device is {be.device_name}")
    tiny = np.array([1e-40, -1e-40, 1.4e-45, -1.17e-38, 5e-39, 1e-39, -3e-42, 2e-45], np.float32)

    def build(b):
        x, z = b.input("x", (8,)), b.input("z", (8,))
        return [
            b.op("Add", [x, z], (8,)),
            b.op("Mul", [x, b.input("one", (8,))], (8,)),
            b.op("Relu", [x], (8,)),
            b.op("Neg", [x], (8,)),
            b.op("Transpose", [x], (8,), perm=[0]),
            b.op("Mul", [b.input("small", (8,)), b.input("smaller", (8,))], (8,)),  # denormal results
        ]

    feeds = {
        "x": tiny,
        "z": np.zeros(8, np.float32),
        "one": np.ones(8, np.float32),
        "small": np.full(8, 1e-20, np.float32),
        "smaller": np.full(8, 1e-20, np.float32),
    }
    run_case(be, build, exact=True, feeds=feeds)
