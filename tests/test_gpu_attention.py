"""The opset-23 Attention, RotaryEmbedding and RMSNormalization on the GPU (codegen/gpu/ops/attention.py, one
dispatch each), against onnxruntime (opset 23; rtol 1e-4, atol 1e-5): multi-head and grouped-query, 3-D and 4-D,
causal, bool and float masks, softcap, rows with every key masked."""

from __future__ import annotations

import numpy as np
import pytest
from gpu_harness import Builder, backend, check

from codegen.gpu import lower, unsupported_reason
from codegen.gpu.ops import attention

OPSET = 23


@pytest.fixture(scope="module")
def be():
    b = backend()
    yield b
    b.close()


def _graph(b: Builder, outputs: list[str]):
    g = b.graph(outputs)
    g.opset = OPSET
    return g


def _one_dispatch(g) -> None:
    assert all(unsupported_reason(g, op) is None for op in g.ops)
    assert len(lower(g)[1]) == len(g.ops)


@pytest.mark.parametrize(
    ("hq", "hkv", "sq", "skv", "d"),
    [(4, 4, 16, 16, 16), (4, 2, 7, 33, 8), (8, 1, 5, 300, 32), (2, 2, 3, 1100, 64), (2, 2, 5, 21, 6)],
)
@pytest.mark.parametrize("causal", [0, 1])
def test_attention_4d(be, hq, hkv, sq, skv, d, causal):
    b = Builder()
    q, k, v = b.input("q", (2, hq, sq, d)), b.input("k", (2, hkv, skv, d)), b.input("v", (2, hkv, skv, d))
    y = b.op("Attention", [q, k, v], (2, hq, sq, d), is_causal=causal)
    g = _graph(b, [y])
    _one_dispatch(g)
    check(g, be)


def test_attention_value_heads_wider_than_key_heads(be):
    """Q and K rows of 6 (a vec4 and a zero-padded half in shared memory), V rows of 10."""
    b = Builder()
    q, k, v = b.input("q", (1, 2, 5, 6)), b.input("k", (1, 2, 21, 6)), b.input("v", (1, 2, 21, 10))
    y = b.op("Attention", [q, k, v], (1, 2, 5, 10))
    g = _graph(b, [y])
    _one_dispatch(g)
    check(g, be)


@pytest.mark.parametrize(("hq", "hkv", "causal"), [(8, 8, 1), (8, 2, 0)])
def test_attention_in_blocks_of_query_rows(be, hq, hkv, causal):
    """Enough heads x rows for several query rows per workgroup, the last block partly filled (300 = 18 x 16 + 12)."""
    b = Builder()
    q, k, v = b.input("q", (2, hq, 300, 16)), b.input("k", (2, hkv, 300, 16)), b.input("v", (2, hkv, 300, 16))
    y = b.op("Attention", [q, k, v], (2, hq, 300, 16), is_causal=causal)
    g = _graph(b, [y])
    assert lower(g)[1][0].dispatch.params["R"] == 16
    check(g, be)


@pytest.mark.parametrize(("rows", "chunk"), [(32, 32), (16, 128), (8, 64), (4, 16), (2, 8), (1, 32)])
def test_attention_every_blocking(be, monkeypatch, rows, chunk):
    """Each R x CH the rule may pick, forced, on sizes none of them divide: 37 query rows, 45 keys, head size 6
    (Q, K) and 10 (V), grouped query heads, causal. R below the slots of the V product splits the keys among
    slots (KS > 1), summed in slot order."""
    monkeypatch.setattr(attention, "blocking", lambda spec: (rows, chunk))
    b = Builder()
    q, k, v = b.input("q", (1, 4, 37, 6)), b.input("k", (1, 2, 45, 6)), b.input("v", (1, 2, 45, 10))
    y = b.op("Attention", [q, k, v], (1, 4, 37, 10), is_causal=1)
    g = _graph(b, [y])
    params = lower(g)[1][0].dispatch.params
    assert (params["R"], params["CH"]) == (rows, chunk)
    check(g, be)


@pytest.mark.parametrize("mask_dtype", ["bool", "float32"])
def test_attention_masks_and_fully_masked_rows(be, mask_dtype):
    b = Builder()
    q, k, v = b.input("q", (1, 4, 6, 8)), b.input("k", (1, 4, 9, 8)), b.input("v", (1, 4, 9, 8))
    mask = b.input("mask", (1, 1, 6, 9), mask_dtype)
    y = b.op("Attention", [q, k, v, mask], (1, 4, 6, 8), scale=0.3)
    g = _graph(b, [y])
    rng = np.random.default_rng(3)
    feeds = {n: rng.standard_normal(g.tensors[n].shape).astype(np.float32) for n in ("q", "k", "v")}
    keep = rng.random((1, 1, 6, 9)) < 0.6
    keep[0, 0, 2] = False  # a query row that attends to nothing
    feeds["mask"] = (
        keep if mask_dtype == "bool" else np.where(keep, rng.standard_normal(keep.shape), -np.inf).astype(np.float32)
    )
    check(g, be, feeds)


def test_attention_3d_with_softcap(be):
    b = Builder()
    q, k, v = b.input("q", (2, 5, 32)), b.input("k", (2, 7, 16)), b.input("v", (2, 7, 16))
    y = b.op("Attention", [q, k, v], (2, 5, 32), q_num_heads=4, kv_num_heads=2, softcap=2.0)
    g = _graph(b, [y])
    _one_dispatch(g)
    check(g, be, {n: 3 * x for n, x in __import__("gpu_harness").random_feeds(g).items()})


def test_attention_with_cache_stays_off_the_gpu():
    b = Builder()
    q, k, v = b.input("q", (1, 2, 3, 4)), b.input("k", (1, 2, 3, 4)), b.input("v", (1, 2, 3, 4))
    y = b.op("Attention", [q, k, v, "", b.input("past_k", (1, 2, 5, 4)), b.input("past_v", (1, 2, 5, 4))], (1, 2, 3, 4))
    g = _graph(b, [y])
    assert "KV cache" in unsupported_reason(g, g.ops[0])


@pytest.mark.parametrize("interleaved", [0, 1])
@pytest.mark.parametrize("rot", [0, 8])
def test_rotary_embedding(be, interleaved, rot):
    b = Builder()
    x = b.input("x", (2, 3, 5, 16))
    angles = np.random.default_rng(4).uniform(-3, 3, (11, (rot or 16) // 2))
    cos, sin = b.const("cos", np.cos(angles).astype(np.float32)), b.const("sin", np.sin(angles).astype(np.float32))
    pos = b.const("pos", np.random.default_rng(5).integers(0, 11, (2, 5)))
    y = b.op("RotaryEmbedding", [x, cos, sin, pos], (2, 3, 5, 16), interleaved=interleaved, rotary_embedding_dim=rot)
    g = _graph(b, [y])
    _one_dispatch(g)
    check(g, be)


def test_rotary_embedding_3d_batched_cache(be):
    b = Builder()
    x = b.input("x", (2, 5, 24))
    angles = np.random.default_rng(6).uniform(-3, 3, (2, 5, 3))
    cos, sin = b.const("cos", np.cos(angles).astype(np.float32)), b.const("sin", np.sin(angles).astype(np.float32))
    y = b.op("RotaryEmbedding", [x, cos, sin], (2, 5, 24), num_heads=4)
    check(_graph(b, [y]), be)


@pytest.mark.parametrize(("shape", "axis"), [((2, 7, 64), -1), ((3, 4, 300), -1), ((2, 3, 4), 1)])
def test_rms_normalization(be, shape, axis):
    b = Builder()
    x = b.input("x", shape)
    y = b.op("RMSNormalization", [x, b.weight("scale", shape[axis:])], shape, axis=axis, epsilon=1e-6)
    check(_graph(b, [y]), be)
