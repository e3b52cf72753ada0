"""Scans, index-driven movement and generated tensors on the GPU (codegen/gpu/ops/scan.py, scatter.py,
generate.py) and the Reduce* family, against onnxruntime on random inputs (rtol 1e-4, atol 1e-5; exact for
integers and copies)."""

from __future__ import annotations

import numpy as np
import pytest
from gpu_harness import Builder, backend, check

from codegen.gpu import unsupported_reason


@pytest.fixture(scope="module")
def be():
    b = backend()
    yield b
    b.close()


@pytest.mark.parametrize("op_type", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize(("shape", "axis"), [((3, 7), 1), ((2, 300, 3), 1), ((5, 4), 0), ((2, 2100), -1)])
@pytest.mark.parametrize("last", [0, 1])
def test_arg_reductions(be, op_type, shape, axis, last):
    b = Builder()
    out = tuple(1 if d == axis % len(shape) else s for d, s in enumerate(shape))
    y = b.op(op_type, [b.input("x", shape)], out, "int64", axis=axis, keepdims=1, select_last_index=last)
    feeds = {"x": np.random.default_rng(1).integers(-5, 5, shape).astype(np.float32)}  # many ties
    check(b.graph([y]), be, feeds)


@pytest.mark.parametrize("dtype", ["float32", "int64", "int32"])
@pytest.mark.parametrize(("exclusive", "reverse"), [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_cumsum(be, dtype, exclusive, reverse):
    b = Builder()
    x = b.input("x", (3, 33, 4), dtype)
    y = b.op("CumSum", [x, b.const("axis", np.int64(1))], (3, 33, 4), dtype, exclusive=exclusive, reverse=reverse)
    feeds = {"x": (np.random.default_rng(2).standard_normal((3, 33, 4)) * 10).astype(dtype)}
    check(b.graph([y]), be, feeds)


@pytest.mark.parametrize("op_type", ["ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceSumSquare"])
@pytest.mark.parametrize(("shape", "axes"), [((3, 5, 7), [1]), ((2, 3, 700), [2]), ((4, 6), [0, 1])])
def test_more_reductions(be, op_type, shape, axes):
    b = Builder()
    out = tuple(1 if d in axes else s for d, s in enumerate(shape))
    y = b.op(op_type, [b.input("x", shape), b.const("axes", np.array(axes, np.int64))], out)
    scale = 1.0 if op_type != "ReduceProd" else 0.2
    feeds = {"x": (1.0 + scale * np.random.default_rng(3).standard_normal(shape)).astype(np.float32)}
    check(b.graph([y]), be, feeds, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", ["float32", "int64", "bool"])
def test_gather_and_scatter_elements(be, dtype):
    b = Builder()
    data = b.input("data", (4, 6, 5), dtype)
    idx = b.const("idx", np.random.default_rng(4).integers(-6, 6, (4, 3, 5)))
    g = b.op("GatherElements", [data, idx], (4, 3, 5), dtype, axis=1)
    perm = np.stack([np.random.default_rng(k).permutation(6)[:3] for k in range(20)]).reshape(4, 5, 3)
    unique = b.const("unique", np.transpose(perm, (0, 2, 1)).astype(np.int64))  # no duplicates along the axis
    s = b.op("ScatterElements", [data, unique, g], (4, 6, 5), dtype, axis=1)
    check(b.graph([g, s]), be)


@pytest.mark.parametrize("batch_dims", [0, 1])
def test_gather_nd(be, batch_dims):
    b = Builder()
    data = b.input("data", (2, 5, 4, 3))
    rng = np.random.default_rng(5)
    if batch_dims:
        idx = np.stack([rng.integers(0, 5, (6,)), rng.integers(-4, 4, (6,))], -1).reshape(2, 3, 2)
        out = (2, 3, 3)
    else:
        idx = np.stack([rng.integers(0, 2, (3, 2)), rng.integers(0, 5, (3, 2))], -1)
        out = (3, 2, 4, 3)
    y = b.op("GatherND", [data, b.const("idx", idx.astype(np.int64))], out, batch_dims=batch_dims)
    check(b.graph([y]), be)


def test_scatter_nd(be):
    b = Builder()
    data = b.input("data", (6, 4, 3), "int64")
    updates = b.input("updates", (2, 2, 3), "int64")
    idx = b.const("idx", np.array([[[5, 1], [0, 3]], [[2, 2], [5, 0]]], np.int64))
    y = b.op("ScatterND", [data, idx, updates], (6, 4, 3), "int64")
    check(b.graph([y]), be)


@pytest.mark.parametrize("dtype", ["float32", "int64", "bool"])
@pytest.mark.parametrize(("upper", "k"), [(1, 0), (0, 0), (1, 2), (0, -3)])
def test_trilu(be, dtype, upper, k):
    b = Builder()
    y = b.op("Trilu", [b.input("x", (2, 7, 9), dtype), b.const("k", np.int64(k))], (2, 7, 9), dtype, upper=upper)
    check(b.graph([y]), be)


def test_tile_and_range(be):
    b = Builder()
    t = b.op("Tile", [b.input("x", (2, 3, 1), "int64"), b.const("reps", np.array([2, 1, 4]))], (4, 3, 4), "int64")
    r = b.op(
        "Range",
        [b.input("start", (), "int64"), b.const("limit", np.int64(0)), b.input("delta", (), "int64")],
        (11,),
        "int64",
    )
    f = b.op("Range", [b.input("fs", ()), b.const("fl", np.float32(30.0)), b.input("fd", ())], (299,))
    feeds = {
        "x": np.arange(6, dtype=np.int64).reshape(2, 3, 1),
        "start": np.array(21, np.int64),
        "delta": np.array(-2, np.int64),
        "fs": np.array(0.1, np.float32),
        "fd": np.array(0.1, np.float32),
    }
    check(b.graph([t, r, f]), be, feeds, rtol=0, atol=0)  # Range adds delta in turn, as onnxruntime: exact


def test_scatter_with_reduction_stays_off_the_gpu():
    b = Builder()
    data = b.input("data", (4, 3))
    y = b.op("ScatterND", [data, b.const("i", np.array([[1]])), b.input("u", (1, 3))], (4, 3), reduction="add")
    g = b.graph([y])
    assert "reduction 'add'" in unsupported_reason(g, g.ops[0])


@pytest.mark.parametrize(
    ("equation", "a", "b", "out"),
    [
        ("bhid,bhjd->bhij", (1, 2, 5, 8), (1, 2, 7, 8), (1, 2, 5, 7)),
        ("bhij,bhjd->bhid", (1, 2, 5, 7), (1, 2, 7, 8), (1, 2, 5, 8)),
        ("i,j->ij", (5,), (9,), (5, 9)),
        ("bij,bjk->bik", (3, 4, 6), (3, 6, 5), (3, 4, 5)),
        ("...ij,...kj->...ik", (2, 3, 4, 6), (2, 3, 5, 6), (2, 3, 4, 5)),
        ("bshd,bthd->bhst", (2, 5, 3, 4), (2, 6, 3, 4), (2, 3, 5, 6)),
        ("ij,jk->ki", (4, 6), (6, 5), (5, 4)),
    ],
)
def test_einsum(be, equation, a, b, out):
    bld = Builder()
    y = bld.op("Einsum", [bld.input("a", a), bld.input("b", b)], out, equation=equation)
    check(bld.graph([y]), be)


def test_einsum_variants_left_to_the_cpu():
    for equation, shapes in (("ii,i->i", ((3, 3), (3,))), ("ij,k->i", ((3, 4), (5,)))):
        b = Builder()
        y = b.op("Einsum", [b.input("a", shapes[0]), b.input("b", shapes[1])], (3,), equation=equation)
        g = b.graph([y])
        assert "Einsum" in unsupported_reason(g, g.ops[0])
