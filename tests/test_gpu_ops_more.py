"""Reductions and data-movement ops on the GPU (codegen/gpu_reduce.py, codegen/gpu_movement.py) against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from gpu_harness import Builder, backend, check, random_feeds
from onnx import helper

from codegen.gpu import emit, unsupported_reason
from codegen.gpu.lowering import LoweringError
from codegen.gpu.ops.index import merge_dims, offset_expr
from ragc.ir import Op, Tensor


@pytest.fixture(scope="module")
def be():
    b = backend()
    yield b
    b.close()


def multi_output(b: Builder, op_type: str, inputs: list[str], shapes: list[tuple[int, ...]], **attrs) -> list[str]:
    """Adds an op with several float32 outputs y0, y1, ... to the builder."""
    outs = [f"y{k}" for k in range(len(shapes))]
    for name, shape in zip(outs, shapes, strict=True):
        b.tensors[name] = Tensor(name, tuple(shape), "float32")
    b.ops.append(Op(f"n{len(b.ops)}_{op_type}", op_type, inputs, outs, attrs))
    return outs


def test_merge_dims_and_offsets():
    assert merge_dims((2, 1, 3, 4), (12, 12, 4, 1)) == ((24,), ((1,),))
    assert merge_dims((2, 3, 4), (12, 4, 1), (0, 4, 1)) == ((2, 12), ((12, 1), (0, 1)))
    assert merge_dims((4, 3), (1, 4)) == ((4, 3), ((1, 4),))
    assert offset_expr((4, 3), (1, 4), "i", 5) == "5 + int((i % 3u)) * 4 + int((i / 3u))"
    assert offset_expr((), (), "i") == "0"


def _reduce_shape(shape, axes, keepdims):
    axes = {a % len(shape) for a in axes} if axes else set(range(len(shape)))
    return tuple(1 if d in axes else s for d, s in enumerate(shape) if keepdims or d not in axes)


@pytest.mark.parametrize("op_type", ["ReduceSum", "ReduceMean", "ReduceMax"])
@pytest.mark.parametrize(
    ("shape", "axes", "keepdims"),
    [
        ((3, 5, 7), [1], 1),
        ((3, 5, 7), [0, 2], 0),
        ((2, 3, 4, 5), [-1], 1),
        ((4, 300), [1], 0),
        ((3, 70, 2), [1], 1),
        ((5, 6), [], 1),
        ((5, 6), [], 0),
        ((2, 3, 3000), [2], 0),
    ],
)
def test_reduce_axes_input(be, op_type, shape, axes, keepdims):
    b = Builder()
    ins = [b.input("x", shape)] + ([b.const("axes", np.array(axes, np.int64))] if axes else [])
    y = b.op(op_type, ins, _reduce_shape(shape, axes, keepdims), keepdims=keepdims)
    check(b.graph([y]), be, rtol=1e-4, atol=1e-4)


def test_reduce_axes_attribute_old_opset(be):
    b = Builder()
    y = b.op("ReduceMean", [b.input("x", (3, 4, 5))], (3, 1, 1), axes=[1, 2])
    g = b.graph([y])
    g.opset = 17
    check(g, be)


def test_reduce_noop_with_empty_axes(be):
    b = Builder()
    y = b.op("ReduceSum", [b.input("x", (3, 4))], (3, 4), noop_with_empty_axes=1)
    check(b.graph([y]), be)


@pytest.mark.parametrize(
    ("shape", "axis"), [((2, 3, 17), -1), ((4, 100), 1), ((3, 5, 7), 1), ((6, 9), 0), ((2, 3000), -1)]
)
def test_softmax(be, shape, axis):
    b = Builder()
    y = b.op("Softmax", [b.input("x", shape)], shape, axis=axis)
    check(b.graph([y]), be)


def test_softmax_legacy_flattens_trailing_dims(be):
    b = Builder()
    y = b.op("Softmax", [b.input("x", (2, 3, 4))], (2, 3, 4), axis=1)
    g = b.graph([y])
    g.opset = 11
    check(g, be)


@pytest.mark.parametrize(
    ("shape", "axis", "bias"), [((2, 5, 33), -1, True), ((3, 4, 5), 1, False), ((4, 200), -1, True), ((7, 3), 0, True)]
)
def test_layernorm(be, shape, axis, bias):
    b = Builder()
    x = b.input("x", shape)
    norm = shape[axis % len(shape) :]
    ins = [x, b.weight("scale", norm)] + ([b.weight("bias", norm)] if bias else [])
    y = b.op("LayerNormalization", ins, shape, axis=axis, epsilon=1e-3)
    check(b.graph([y]), be, atol=1e-4)


def test_layernorm_statistics_outputs(be):
    b = Builder()
    ins = [b.input("x", (3, 4, 70)), b.weight("scale", (70,)), b.weight("bias", (70,))]
    outs = multi_output(b, "LayerNormalization", ins, [(3, 4, 70), (3, 4, 1), (3, 4, 1)])
    check(b.graph(outs), be, atol=1e-4)


@pytest.mark.parametrize(
    ("shape", "perm"),
    [((2, 3, 4), [2, 0, 1]), ((5, 7), None), ((2, 3, 4, 5), [0, 2, 3, 1]), ((1, 6, 1, 9), [3, 1, 2, 0])],
)
def test_transpose(be, shape, perm):
    b = Builder()
    perm_ = perm or list(range(len(shape)))[::-1]
    attrs = {"perm": perm} if perm else {}
    y = b.op("Transpose", [b.input("x", shape)], tuple(shape[p] for p in perm_), **attrs)
    check(b.graph([y]), be)


@pytest.mark.parametrize(
    ("shapes", "axis"), [([(2, 3), (2, 5), (2, 1)], 1), ([(1, 4, 3), (3, 4, 3)], 0), ([(2, 3, 4), (2, 3, 7)], -1)]
)
def test_concat(be, shapes, axis):
    b = Builder()
    ins = [b.input(f"x{k}", s) for k, s in enumerate(shapes)]
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    y = b.op("Concat", ins, tuple(out), axis=axis)
    check(b.graph([y]), be)


@pytest.mark.parametrize(("sizes", "axis"), [([2, 3, 5], 1), ([1, 1], 0), ([4, 3], -1)])
def test_split(be, sizes, axis):
    b = Builder()
    shape = [3, 10, 7] if axis == 1 else [2, 4, 7] if axis == -1 else [2, 5]
    shape[axis] = sum(sizes)
    ins = [b.input("x", tuple(shape)), b.const("split", np.array(sizes, np.int64))]
    shapes = [tuple(size if d == axis % len(shape) else n for d, n in enumerate(shape)) for size in sizes]
    check(b.graph(multi_output(b, "Split", ins, shapes, axis=axis)), be)


@pytest.mark.parametrize(
    ("starts", "ends", "axes", "steps"),
    [
        ([1, 0], [3, 10], [0, 1], [1, 3]),
        ([-1], [-1000], [1], [-2]),
        ([2], [100], None, None),
        ([0, 4, 1], [4, 0, 5], [0, 2, 1], [2, -1, 2]),
        ([-3, 9], [-1, -9], [-1, 1], [1, -3]),
    ],
)
def test_slice(be, starts, ends, axes, steps):
    b = Builder()
    shape = (4, 7, 5)
    ins = [b.input("x", shape), b.const("starts", np.array(starts, np.int64))]
    ins.append(b.const("ends", np.array(ends, np.int64)))
    if axes is not None:
        ins.append(b.const("axes", np.array(axes, np.int64)))
    if steps is not None:
        ins.append(b.const("steps", np.array(steps, np.int64)))
    index = [slice(None)] * 3
    for k, axis in enumerate(axes or range(len(starts))):
        index[axis] = slice(starts[k], ends[k], steps[k] if steps else 1)
    y = b.op("Slice", ins, np.zeros(shape)[tuple(index)].shape)
    check(b.graph([y]), be)


@pytest.mark.parametrize(("shape", "out"), [((3, 1), (2, 3, 5)), ((1,), (4, 3)), ((2, 1, 4), (2, 3, 4))])
def test_expand(be, shape, out):
    b = Builder()
    y = b.op("Expand", [b.input("x", shape), b.const("shape", np.array(out, np.int64))], out)
    check(b.graph([y]), be)


@pytest.mark.parametrize(
    ("axis", "indices", "dtype"),
    [(0, [[0, 2], [-1, 1]], "int64"), (1, [4, 0, 3], "int32"), (2, 1, "int64"), (-1, [2, 2, 0, 1, 3], "int64")],
)
@pytest.mark.parametrize("const", [True, False])
def test_gather(be, axis, indices, dtype, const):
    b = Builder()
    data_shape = (3, 5, 4)
    x = b.input("x", data_shape)
    idx = np.array(indices, dtype)
    ind = b.const("idx", idx) if const else b.input("idx", idx.shape, dtype)
    ax = axis % 3
    y = b.op("Gather", [x, ind], data_shape[:ax] + idx.shape + data_shape[ax + 1 :], axis=axis)
    g = b.graph([y])
    feeds = random_feeds(g)
    if not const:
        feeds["idx"] = idx
    check(g, be, feeds)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
@pytest.mark.parametrize("dtype", ["float32", "int64"])
@pytest.mark.parametrize(("pads", "axes"), [([0, 2, 1, 0, 1, 3], None), ([1, 2], [-1]), ([0, 0, -1, 0, 2, 1], None)])
def test_pad(be, mode, dtype, pads, axes):
    b = Builder()
    shape = (2, 4, 5)
    ins = [b.input("x", shape, dtype), b.const("pads", np.array(pads, np.int64)), b.const("value", 3, dtype)]
    if axes is not None:
        ins.append(b.const("axes", np.array(axes, np.int64)))
    full = [0] * 6
    for k, a in enumerate(axes or range(3)):
        full[a % 3], full[a % 3 + 3] = pads[k], pads[k + len(pads) // 2]
    out = tuple(s + full[d] + full[d + 3] for d, s in enumerate(shape))
    y = b.op("Pad", ins, out, dtype, mode=mode)
    g = b.graph([y])
    check(g, be, {"x": (np.random.default_rng(4).standard_normal(shape) * 9).astype(dtype)})


RESIZE_CASES = [
    ("nearest", "asymmetric", "floor", (1, 2, 3, 4), [1, 1, 2, 3], None),
    ("nearest", "half_pixel", "round_prefer_floor", (1, 2, 5, 7), [1, 1, 0.6, 1.7], None),
    ("nearest", "align_corners", "round_prefer_ceil", (2, 3, 4, 4), None, [2, 3, 7, 9]),
    ("nearest", "tf_half_pixel_for_nn", "ceil", (1, 1, 6, 6), [1, 1, 0.5, 0.5], None),
    ("linear", "half_pixel", "round_prefer_floor", (1, 2, 5, 7), [1, 1, 2.5, 0.6], None),
    ("linear", "align_corners", "round_prefer_floor", (2, 1, 4, 5), None, [2, 1, 9, 3]),
    ("linear", "pytorch_half_pixel", "round_prefer_floor", (1, 3, 4, 4), None, [1, 3, 1, 9]),
    ("linear", "asymmetric", "round_prefer_floor", (3, 5), [1.5, 2.0], None),
    ("linear", "half_pixel_symmetric", "round_prefer_floor", (1, 2, 4, 5), [1, 1, 1.7, 0.8], None),
]


@pytest.mark.parametrize(("mode", "coords", "nearest", "shape", "scales", "sizes"), RESIZE_CASES)
def test_resize(be, mode, coords, nearest, shape, scales, sizes):
    b = Builder()
    ins = [b.input("x", shape), ""]
    if scales is not None:
        ins.append(b.const("scales", np.array(scales, np.float32)))
        out = tuple(int(np.floor(s * f)) for s, f in zip(shape, np.array(scales, np.float32), strict=True))
    else:
        ins += ["", b.const("sizes", np.array(sizes, np.int64))]
        out = tuple(sizes)
    y = b.op("Resize", ins, out, mode=mode, coordinate_transformation_mode=coords, nearest_mode=nearest)
    check(b.graph([y]), be)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ("float32", "int32"),
        ("float32", "int64"),
        ("int64", "float32"),
        ("int32", "float32"),
        ("float32", "bool"),
        ("bool", "float32"),
        ("int64", "int32"),
        ("bool", "int64"),
        ("float32", "float32"),
        ("float32", "float16"),
        ("float16", "float32"),
        ("float16", "bool"),
    ],
)
def test_cast(be, src, dst):
    b = Builder()
    to = helper.np_dtype_to_tensor_dtype(np.dtype(dst))
    y = b.op("Cast", [b.input("x", (3, 67), src)], (3, 67), dtype=dst, to=int(to))
    g = b.graph([y])
    feeds = {"x": (np.random.default_rng(3).standard_normal((3, 67)) * 5).astype(src)}
    feeds["x"][0, :3] = 0
    check(g, be, feeds)


@pytest.mark.parametrize("dtype", ["float16", "int64", "int32", "bool"])
def test_copies_of_other_dtypes(be, dtype):
    b = Builder()
    x, z = b.input("x", (3, 5, 2), dtype), b.input("z", (3, 1, 2), dtype)
    t = b.op("Transpose", [x], (2, 5, 3), dtype, perm=[2, 1, 0])
    c = b.op("Concat", [t, b.op("Transpose", [z], (2, 1, 3), dtype, perm=[2, 1, 0])], (2, 6, 3), dtype, axis=1)
    y = b.op("Gather", [c, b.const("idx", np.array([5, 0, -2], np.int64))], (2, 3, 3), dtype, axis=1)
    check(b.graph([y]), be)


def test_movement_chain_with_fused_eltwise(be):
    b = Builder()
    x = b.input("x", (2, 3, 5))
    t = b.op("Transpose", [x], (5, 3, 2), perm=[2, 1, 0])
    r = b.op("Relu", [t], (5, 3, 2))
    s = b.op("Softmax", [r], (5, 3, 2), axis=-1)
    y = b.op("ReduceSum", [s, b.const("axes", np.array([0], np.int64))], (3, 2), keepdims=0)
    check(b.graph([y]), be)


REJECTED = [
    (
        "Resize",
        lambda b: ["", b.const("scales", np.array([1, 1, 2], np.float32))],
        {"mode": "cubic"},
        "nearest and linear",
    ),
    (
        "Resize",
        lambda b: ["", b.const("scales", np.array([1, 1, 2], np.float32))],
        {"coordinate_transformation_mode": "tf_crop_and_resize"},
        "tf_crop_and_resize",
    ),
    (
        "Resize",
        lambda b: ["", b.const("scales", np.array([1, 1, 0.6], np.float32))],
        {"coordinate_transformation_mode": "align_corners"},
        "fractional length",
    ),
    ("Pad", lambda b: [b.input("pads", (6,), "int64")], {}, "must be a constant"),
    ("Pad", lambda b: [b.const("pads", np.zeros(6, np.int64))], {"mode": "mirror"}, "mode"),
    ("Slice", lambda b: [b.input("starts", (1,), "int64"), b.const("ends", np.array([2]))], {}, "must be a constant"),
    ("ReduceSum", lambda b: [b.input("axes", (1,), "int64")], {}, "must be a constant"),
    ("LayerNormalization", lambda b: [b.weight("scale", (4,))], {"stash_type": 0}, "stash_type"),
    ("Gather", lambda b: [b.input("i", (2,))], {}, "float32"),
]


@pytest.mark.parametrize(("op_type", "extra", "attrs", "needle"), REJECTED)
def test_unsupported_variants_are_rejected(op_type, extra, attrs, needle):
    b = Builder()
    x = b.input("x", (2, 4, 4))
    y = b.op(op_type, [x, *extra(b)], (2, 4, 4), **attrs)
    g = b.graph([y])
    reason = unsupported_reason(g, g.ops[0])
    assert reason is not None and needle in reason
    with pytest.raises(LoweringError, match=op_type):
        emit(g, "p1")


def test_emit_is_deterministic():
    def build():
        b = Builder()
        x = b.input("x", (2, 6, 5))
        y = b.op("Resize", [x, "", b.const("scales", np.array([1, 1.5, 2], np.float32))], (2, 9, 10), mode="linear")
        z = b.op("LayerNormalization", [y, b.weight("s", (10,))], (2, 9, 10))
        return b.graph([z])

    first, second = emit(build(), "p1"), emit(build(), "p1")
    assert first.files == second.files and first.meta == second.meta
