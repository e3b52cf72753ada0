"""Pattern fusion on the GPU (codegen/gpu/patterns.py): the attention and RMSNorm sequences the exporters write
become one dispatch each, Transposes around attention are absorbed into its strides, and the results match
onnxruntime on the unfused graph (rtol 1e-4, atol 1e-5). Sequences whose inner tensors are read elsewhere stay."""

from __future__ import annotations

import numpy as np
import pytest
from gpu_harness import Builder, backend, check, random_feeds, templates


@pytest.fixture(scope="module")
def be():
    b = backend()
    yield b
    b.close()


def _attention_graph(guard: bool, mask: bool, scale_by_div: bool, extra_reader: bool = False):
    """(B, S, H, D) inputs transposed to heads, q and k^T scaled, masked Softmax, guard, times v, transposed
    back: the TorchScript exporter's sequence."""
    b = Builder()
    shape, heads = (1, 9, 4, 8), (1, 4, 9, 8)
    q = b.op("Transpose", [b.input("q", shape)], heads, perm=[0, 2, 1, 3])
    kt = b.op("Transpose", [b.input("k", shape)], (1, 4, 8, 9), perm=[0, 2, 3, 1])
    v = b.op("Transpose", [b.input("v", shape)], heads, perm=[0, 2, 1, 3])
    scale = b.const("s", np.float32(8**-0.25))
    scores = b.op("MatMul", [b.op("Mul", [q, scale], heads), b.op("Mul", [kt, scale], (1, 4, 8, 9))], (1, 4, 9, 9))
    if scale_by_div:
        scores = b.op("Div", [scores, b.const("d", np.float32(1.5))], (1, 4, 9, 9))
    if mask:
        bias = b.op(
            "Where",
            [b.input("m", (1, 1, 9, 9), "bool"), b.const("z", np.float32(0)), b.const("ninf", np.float32(-np.inf))],
            (1, 1, 9, 9),
        )
        scores = b.op("Add", [scores, bias], (1, 4, 9, 9))
    p = b.op("Softmax", [scores], (1, 4, 9, 9), axis=-1)
    outs = [p] if extra_reader else []
    if guard:
        p = b.op("Where", [b.op("IsNaN", [p], (1, 4, 9, 9), "bool"), b.const("zero", np.float32(0)), p], (1, 4, 9, 9))
    y = b.op("Transpose", [b.op("MatMul", [p, v], heads)], shape, perm=[0, 2, 1, 3])
    return b.graph([y, *outs])


@pytest.mark.parametrize(("guard", "mask", "div"), [(True, True, False), (False, True, True), (False, False, False)])
def test_attention_pattern_is_one_dispatch(be, guard, mask, div):
    g = _attention_graph(guard, mask, div)
    kinds = templates(g)
    assert kinds.count("attention") == 1 and "strided" not in kinds and "gemm" not in kinds, kinds  # mask: eltwise
    feeds = random_feeds(g)
    if mask:
        feeds["m"] = np.random.default_rng(2).random((1, 1, 9, 9)) < 0.7
        feeds["m"][0, 0, 4] = False  # a fully masked row: NaN without the guard, 0 with it
    got_nan = guard is False and mask
    check(g, be, feeds, atol=1e-5) if not got_nan else _check_nan_rows(g, be, feeds)


def _check_nan_rows(graph, be, feeds):
    from gpu_harness import reference, run_gpu

    got, want = run_gpu(graph, feeds, be), reference(graph, feeds)
    for name in graph.outputs:
        np.testing.assert_array_equal(np.isnan(got[name]), np.isnan(want[name]))
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5)  # NaNs compare equal


def test_attention_pattern_with_a_shared_softmax_stays(be):
    g = _attention_graph(guard=True, mask=False, scale_by_div=False, extra_reader=True)
    assert "attention" not in templates(g)
    check(g, be)


@pytest.mark.parametrize(("square", "recip", "gamma"), [("Pow", "Reciprocal", True), ("Mul", "Div", False)])
def test_rms_norm_pattern_is_one_dispatch(be, square, recip, gamma):
    b = Builder()
    x = b.input("x", (2, 5, 48))
    sq = (
        b.op("Pow", [x, b.const("two", np.float32(2))], (2, 5, 48))
        if square == "Pow"
        else b.op("Mul", [x, x], (2, 5, 48))
    )
    mean = b.op("ReduceMean", [sq, b.const("axes", np.array([-1]))], (2, 5, 1), keepdims=1)
    root = b.op("Sqrt", [b.op("Add", [mean, b.const("eps", np.float32(1e-6))], (2, 5, 1))], (2, 5, 1))
    if recip == "Reciprocal":
        inv = b.op("Reciprocal", [root], (2, 5, 1))
    else:
        inv = b.op("Div", [b.const("one", np.float32(1)), root], (2, 5, 1))
    y = b.op("Mul", [x, inv], (2, 5, 48))
    if gamma:
        y = b.op("Mul", [b.weight("g", (48,)), y], (2, 5, 48))
    g = b.graph([y])
    assert templates(g) == ["layernorm"]
    check(g, be)


def _repeat_heads(b: Builder, x: str, kv: int, rep: int, s: int, d: int) -> str:
    """K or V (1, kv, s, d) repeated to (1, kv * rep, s, d) as HF's repeat_kv exports."""
    u = b.op("Unsqueeze", [x, b.const(f"ax{x}", np.array([2]))], (1, kv, 1, s, d))
    e = b.op("Expand", [u, b.const(f"sh{x}", np.array([1, kv, rep, s, d]))], (1, kv, rep, s, d))
    return b.op("Reshape", [e, b.const(f"rs{x}", np.array([1, kv * rep, s, d]))], (1, kv * rep, s, d))


def test_grouped_query_repeat_and_3d_transpose_detour_are_absorbed(be):
    """Grouped-query K and V repeated over the query heads, K^T through the dynamo exporter's 3-D detour."""
    b = Builder()
    q = b.input("q", (1, 4, 6, 8))
    k, v = (_repeat_heads(b, b.input(n, (1, 2, 6, 8)), 2, 2, 6, 8) for n in ("k", "v"))
    flat = b.op("Reshape", [k, b.const("to3", np.array([4, 6, 8]))], (4, 6, 8))
    kt = b.op(
        "Reshape",
        [b.op("Transpose", [flat], (4, 8, 6), perm=[0, 2, 1]), b.const("to4", np.array([1, 4, 8, 6]))],
        (1, 4, 8, 6),
    )
    p = b.op("Softmax", [b.op("MatMul", [q, kt], (1, 4, 6, 6))], (1, 4, 6, 6), axis=-1)
    y = b.op("MatMul", [p, v], (1, 4, 6, 8))
    g = b.graph([y])
    assert templates(g) == ["attention"]
    check(g, be)


def test_onnx_attention_absorbs_transposes(be):
    b = Builder()
    q, k, v = (b.op("Transpose", [b.input(n, (2, 5, 4, 8))], (2, 4, 5, 8), perm=[0, 2, 1, 3]) for n in "qkv")
    y = b.op("Transpose", [b.op("Attention", [q, k, v], (2, 4, 5, 8), is_causal=1)], (2, 5, 4, 8), perm=[0, 2, 1, 3])
    g = b.graph([y])
    g.opset = 23
    assert templates(g) == ["attention"]
    check(g, be)


def _rotate(b: Builder, x: str, shape: tuple[int, ...], cos: str, sin: str, swapped: bool = False) -> str:
    """HF's apply_rotary_pos_emb on x: x * cos + rotate_half(x) * sin, as the exporters write it."""
    half = shape[-1] // 2

    def piece(name, start, end):
        consts = [b.const(f"{x}{name}{k}", np.array([v])) for k, v in enumerate((start, end, -1))]
        return b.op("Slice", [x, *consts], (*shape[:-1], half))

    hi, lo = piece("hi", half, shape[-1]), piece("lo", 0, half)
    turned = b.op("Concat", [b.op("Neg", [hi], (*shape[:-1], half)), lo], shape, axis=-1)
    a = b.op("Mul", [cos, x] if swapped else [x, cos], shape)
    c = b.op("Mul", [sin, turned] if swapped else [turned, sin], shape)
    return b.op("Add", [c, a] if swapped else [a, c], shape)


@pytest.mark.parametrize("swapped", [False, True])
def test_rotate_half_is_one_dispatch(be, swapped):
    """HF's apply_rotary_pos_emb: q * cos + rotate_half(q) * sin, cos and sin broadcast over heads."""
    b = Builder()
    x, shape = b.input("x", (1, 3, 7, 16)), (1, 3, 7, 16)
    cos, sin = b.input("cos", (1, 1, 7, 16)), b.input("sin", (1, 1, 7, 16))
    g = b.graph([_rotate(b, x, shape, cos, sin, swapped)])
    assert templates(g) == ["rotate_half"]
    check(g, be)


def test_gelu_after_a_bias_is_the_gemm_epilogue(be):
    """x = MatMul + bias, then erf-GELU reading x twice: one GEMM dispatch, the whole tail its epilogue."""
    b = Builder()
    x = b.op("MatMul", [b.input("a", (1, 9, 16)), b.weight("w", (16, 24))], (1, 9, 24))
    x = b.op("Add", [x, b.weight("bias", (24,))], (1, 9, 24))
    erf = b.op("Erf", [b.op("Div", [x, b.const("sqrt2", np.float32(2**0.5))], (1, 9, 24))], (1, 9, 24))
    half = b.op(
        "Mul",
        [
            b.op("Mul", [x, b.op("Add", [erf, b.const("one", np.float32(1))], (1, 9, 24))], (1, 9, 24)),
            b.const("half", np.float32(0.5)),
        ],
        (1, 9, 24),
    )
    g = b.graph([half])
    assert templates(g) == ["gemm"]
    check(g, be)


def test_residual_add_after_a_reshaped_gemm_is_its_epilogue(be):
    """GPT-2's Gemm (S, N) -> Reshape (1, S, N) -> Add(residual), and ViT's extra unit-axis reshape."""
    b = Builder()
    residual = b.input("r", (1, 9, 24))
    y = b.op("Gemm", [b.input("a", (9, 16)), b.weight("w", (16, 24)), b.weight("c", (24,))], (9, 24))
    y = b.op("Reshape", [y, b.const("s3", np.array([9, 1, 24]))], (9, 1, 24))
    y = b.op("Reshape", [y, b.const("s1", np.array([1, 9, 24]))], (1, 9, 24))
    g = b.graph([b.op("Add", [y, residual], (1, 9, 24))])
    assert templates(g) == ["gemm"]
    check(g, be)


def test_rotary_before_attention_is_read_into_q_and_k(be):
    """The Llama's layer as HF exports it: Q and K transposed to heads, rotated (cos and sin broadcast over
    heads), K and V repeated over query heads: one attention dispatch, no rotation or copy left."""
    b = Builder()
    s, d = 9, 8
    cos, sin = b.input("cos", (1, 1, s, d)), b.input("sin", (1, 1, s, d))

    def heads(name: str, h: int) -> str:
        return b.op("Transpose", [b.input(name, (1, s, h, d))], (1, h, s, d), perm=[0, 2, 1, 3])

    q = _rotate(b, heads("q", 4), (1, 4, s, d), cos, sin)
    k = _repeat_heads(b, _rotate(b, heads("k", 2), (1, 2, s, d), cos, sin, swapped=True), 2, 2, s, d)
    v = _repeat_heads(b, heads("v", 2), 2, 2, s, d)
    kt = b.op("Transpose", [k], (1, 4, d, s), perm=[0, 1, 3, 2])
    p = b.op("Softmax", [b.op("MatMul", [q, kt], (1, 4, s, s))], (1, 4, s, s), axis=-1)
    g = b.graph([b.op("MatMul", [p, v], (1, 4, s, d))])
    assert templates(g) == ["attention"]
    check(g, be)
