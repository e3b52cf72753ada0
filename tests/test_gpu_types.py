"""Elementwise ops on int64, int32 and bool tensors on the GPU (codegen/gpu/ops/expressions.py), against onnxruntime:
arithmetic, comparisons, logic, Where, Cast, and the mask arithmetic exporters write, fused into one kernel."""

from __future__ import annotations

import numpy as np
import pytest
from gpu_harness import Builder, backend, check, reference, run_gpu
from onnx import helper

from codegen.gpu import lower, unsupported_reason

SHAPE = (3, 1, 37)
OTHER = (1, 5, 37)  # broadcast against SHAPE to (3, 5, 37)
OUT = (3, 5, 37)


@pytest.fixture(scope="module")
def be():
    b = backend()
    yield b
    b.close()


def _ints(shape: tuple[int, ...], dtype: str, seed: int, nonzero: bool = False) -> np.ndarray:
    x = np.random.default_rng(seed).integers(-1000, 1000, shape).astype(dtype)
    return np.where(x == 0, 7, x).astype(dtype) if nonzero else x


def _to(dtype: str) -> int:
    return int(helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))


@pytest.mark.parametrize("dtype", ["int64", "int32"])
@pytest.mark.parametrize(
    ("op_type", "attrs"),
    [("Add", {}), ("Sub", {}), ("Mul", {}), ("Div", {}), ("Mod", {}), ("Mod", {"fmod": 1}), ("Max", {}), ("Min", {})],
)
def test_integer_arithmetic(be, dtype, op_type, attrs):
    b = Builder()
    y = b.op(op_type, [b.input("a", SHAPE, dtype), b.input("b", OTHER, dtype)], OUT, dtype, **attrs)
    check(b.graph([y]), be, {"a": _ints(SHAPE, dtype, 1), "b": _ints(OTHER, dtype, 2, nonzero=True)})


@pytest.mark.parametrize("dtype", ["int64", "int32"])
@pytest.mark.parametrize("op_type", ["Neg", "Abs", "Sign"])
def test_integer_unary(be, dtype, op_type):
    b = Builder()
    y = b.op(op_type, [b.input("a", SHAPE, dtype)], SHAPE, dtype)
    check(b.graph([y]), be, {"a": _ints(SHAPE, dtype, 3)})


def test_integer_clip_and_variadic_max(be):
    b = Builder()
    a, c = b.input("a", SHAPE, "int64"), b.input("c", OTHER, "int64")
    clipped = b.op("Clip", [a, b.const("lo", np.int64(-300)), b.const("hi", np.int64(250))], SHAPE, "int64")
    y = b.op("Max", [clipped, c, b.const("k", np.int64(3))], OUT, "int64")
    check(b.graph([y]), be, {"a": _ints(SHAPE, "int64", 4), "c": _ints(OTHER, "int64", 5)})


@pytest.mark.parametrize("dtype", ["float32", "int64", "int32"])
@pytest.mark.parametrize("op_type", ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"])
def test_comparisons(be, dtype, op_type):
    b = Builder()
    y = b.op(op_type, [b.input("a", SHAPE, dtype), b.input("b", OTHER, dtype)], OUT, "bool")
    rng = np.random.default_rng(6)
    feeds = {"a": rng.integers(-3, 3, SHAPE).astype(dtype), "b": rng.integers(-3, 3, OTHER).astype(dtype)}
    check(b.graph([y]), be, feeds)


@pytest.mark.parametrize("op_type", ["And", "Or", "Xor", "Equal"])
def test_logic(be, op_type):
    b = Builder()
    y = b.op(op_type, [b.input("a", SHAPE, "bool"), b.input("b", OTHER, "bool")], OUT, "bool")
    n = b.op("Not", [y], OUT, "bool")
    check(b.graph([y, n]), be)


@pytest.mark.parametrize("dtype", ["float32", "int64", "int32", "bool"])
def test_where_branches(be, dtype):
    b = Builder()
    cond = b.input("c", (1, 5, 1), "bool")
    y = b.op("Where", [cond, b.input("a", SHAPE, dtype), b.input("b", OTHER, dtype)], OUT, dtype)
    rng = np.random.default_rng(7)
    feeds = {"c": rng.random((1, 5, 1)) < 0.5}
    for name, shape in (("a", SHAPE), ("b", OTHER)):
        feeds[name] = (rng.random(shape) < 0.5) if dtype == "bool" else (rng.standard_normal(shape) * 100).astype(dtype)
    if dtype == "bool":  # onnxruntime has no bool Where kernel: numpy is the reference
        got = run_gpu(b.graph([y]), feeds, be)[y]
        np.testing.assert_array_equal(got, np.where(feeds["c"], feeds["a"], feeds["b"]))
        return
    check(b.graph([y]), be, feeds)


CAST_TYPES = ["float32", "float16", "int64", "int32", "bool"]


def _cast_feed(src: str) -> np.ndarray:
    rng = np.random.default_rng(8)
    if src == "bool":
        return rng.random((4, 50)) < 0.5
    x = rng.standard_normal((4, 50)) * 3000
    x[0, :6] = [0.0, -0.0, 65504.0, 65520.0, 70000.0, -1e6]  # float16's largest, its overflow tie, beyond
    x[1, :5] = [2049.0, 2051.0, 1.0009765625, 5.9604644775390625e-08, 3e-08]  # float16 ties to even, subnormals
    with np.errstate(over="ignore"):  # float16 overflows to inf on purpose
        return x.astype(src)


@pytest.mark.parametrize("dst", CAST_TYPES)
@pytest.mark.parametrize("src", CAST_TYPES)
def test_cast_matrix(be, src, dst):
    b = Builder()
    y = b.op("Cast", [b.input("x", (4, 50), src)], (4, 50), dst, to=_to(dst))
    feeds = {"x": _cast_feed(src)}
    got, want = run_gpu(b.graph([y]), feeds, be)[y], reference(b.graph([y]), feeds)[y]
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)  # every conversion is exact


def test_exported_mask_arithmetic_fuses(be):
    """The padding mask as the TorchScript exporter writes it: (1 - float(mask)) * lowest, broadcast over heads
    and queries, added to the scores, Softmax, and the IsNaN guard: three dispatches, all on the GPU."""
    b = Builder()
    mask = b.input("mask", (1, 16), "int64")
    m = b.op("Unsqueeze", [mask, b.const("axes", np.array([1, 2], np.int64))], (1, 1, 1, 16), "int64")
    f = b.op("Cast", [m], (1, 1, 1, 16), to=_to("float32"))
    inv = b.op("Sub", [b.const("one", np.float32(1.0)), f], (1, 1, 1, 16))
    as_bool = b.op("Cast", [inv], (1, 1, 1, 16), "bool", to=_to("bool"))
    bias = b.op("Where", [as_bool, b.const("lowest", np.float32(-3.4028234663852886e38)), inv], (1, 1, 1, 16))
    scores = b.op("Add", [b.input("s", (1, 4, 16, 16)), bias], (1, 4, 16, 16))
    p = b.op("Softmax", [scores], (1, 4, 16, 16), axis=-1)
    nan = b.op("IsNaN", [p], (1, 4, 16, 16), "bool")
    y = b.op("Where", [nan, b.const("zero", np.float32(0.0)), p], (1, 4, 16, 16))
    g = b.graph([y])
    assert all(unsupported_reason(g, op) is None for op in g.ops)
    _, steps, _ = lower(g)
    # the bias (1 - mask read twice, inside one tree) with the score add, Softmax, the guard
    assert [s.dispatch.template for s in steps] == ["eltwise.comp.j2", "softmax.comp.j2", "eltwise.comp.j2"]
    rng = np.random.default_rng(9)
    feeds = {"mask": (rng.random((1, 16)) < 0.7).astype(np.int64), "s": rng.standard_normal((1, 4, 16, 16), np.float32)}
    feeds["mask"][0, :2] = [0, 1]
    check(g, be, feeds)


def test_fully_masked_rows_give_zeros_through_the_guard(be):
    b = Builder()
    s = b.input("s", (2, 8))
    p = b.op("Softmax", [s], (2, 8), axis=-1)
    y = b.op("Where", [b.op("IsNaN", [p], (2, 8), "bool"), b.const("zero", np.float32(0.0)), p], (2, 8))
    feeds = {"s": np.random.default_rng(10).standard_normal((2, 8), np.float32)}
    feeds["s"][1] = -np.inf  # every key masked: softmax is NaN, the guard makes it 0
    out = run_gpu(b.graph([y]), feeds, be)[y]
    np.testing.assert_array_equal(out[1], np.zeros(8, np.float32))
    check(b.graph([y]), be, feeds)
