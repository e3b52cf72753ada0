"""Strided views (codegen/gpu/views.py): attention reads Q, K and V through the movement ops the exporters write
between a fused QKV projection and the attention (torchvision's ViT: Reshape, Transpose, Gather of one index;
GPT-2: Split; Slices), those ops absorbed where nothing else reads them, and the results match onnxruntime on the
unabsorbed graph (rtol 1e-4, atol 1e-5). Views that are not affine stay as copies."""

from __future__ import annotations

import numpy as np
import pytest
from gpu_harness import Builder, backend, check, templates

from codegen.gpu.views import Affine, View, identity, reshaped

S, H, D = 7, 3, 8
E = H * D


@pytest.fixture(scope="module")
def be():
    b = backend()
    yield b
    b.close()


def _attend(b: Builder, q: str, k: str, v: str, batch: int = 1) -> str:
    """Softmax(q k^T / sqrt(D)) v on (batch, H, S, D) heads, written back as (S, batch, E)."""
    kt = b.op("Transpose", [k], (batch, H, D, S), perm=[0, 1, 3, 2])
    scale = b.const("scale", np.float32(D**-0.5))
    scores = b.op("Mul", [b.op("MatMul", [q, kt], (batch, H, S, S)), scale], (batch, H, S, S))
    y = b.op("MatMul", [b.op("Softmax", [scores], (batch, H, S, S), axis=-1), v], (batch, H, S, D))
    return b.op("Transpose", [y], (S, batch, H, D), perm=[2, 0, 1, 3])


def _vit_heads(b: Builder, packed: str, extra_reader: bool = False) -> tuple[list[str], list[str]]:
    """torchvision's MultiheadAttention split of a (S, 1, 3E) projection into (1, H, S, D) heads."""
    five = b.op(
        "Unsqueeze",
        [b.op("Reshape", [packed, b.const("r5", np.array([S, 1, 3, E]))], (S, 1, 3, E)), b.const("u0", np.array([0]))],
        (1, S, 1, 3, E),
    )
    moved = b.op("Transpose", [five], (3, S, 1, 1, E), perm=[3, 1, 2, 0, 4])
    stacked = b.op("Squeeze", [moved, b.const("sq", np.array([3]))], (3, S, 1, E))
    heads = []
    for i in range(3):
        one = b.op("Gather", [stacked, b.const(f"i{i}", np.array(i))], (S, 1, E), axis=0)
        split = b.op("Reshape", [one, b.const(f"h{i}", np.array([S, H, D]))], (S, H, D))
        t = b.op("Transpose", [split], (H, S, D), perm=[1, 0, 2])
        heads.append(b.op("Reshape", [t, b.const(f"b{i}", np.array([1, H, S, D]))], (1, H, S, D)))
    return heads, [stacked] if extra_reader else []


@pytest.mark.parametrize("extra_reader", [False, True])
def test_vit_qkv_split_is_read_in_place(be, extra_reader):
    b = Builder()
    x = b.input("x", (S, 1, E))
    packed = b.op("MatMul", [x, b.weight("w", (E, 3 * E))], (S, 1, 3 * E))
    (q, k, v), outs = _vit_heads(b, packed, extra_reader)
    g = b.graph([_attend(b, q, k, v), *outs])
    kernels = templates(g)
    assert kernels.count("attention") == 1
    assert ("strided" in kernels) == extra_reader  # the stacked copy still runs for its other reader
    assert "gather" not in kernels or extra_reader
    check(g, be)


@pytest.mark.parametrize("batch", [1, 2])
def test_gpt2_split_is_read_in_place(be, batch):
    b = Builder()
    x = b.input("x", (batch, S, E))
    packed = b.op("MatMul", [x, b.weight("w", (E, 3 * E))], (batch, S, 3 * E))
    parts = b.op_outputs("Split", [packed, b.const("sizes", np.array([E, E, E]))], [(batch, S, E)] * 3, axis=2)
    heads = [
        b.op(
            "Transpose",
            [b.op("Reshape", [p, b.const(f"s{i}", np.array([batch, S, H, D]))], (batch, S, H, D))],
            (batch, H, S, D),
            perm=[0, 2, 1, 3],
        )
        for i, p in enumerate(parts)
    ]
    g = b.graph([_attend(b, *heads, batch=batch)])
    assert templates(g) == ["gemm", "attention"]
    check(g, be)


def test_sliced_heads_are_read_in_place(be):
    """Q, K and V as Slices (every other row of a longer sequence for V) of one input."""
    b = Builder()
    x = b.input("x", (1, H, 2 * S, 3 * D))

    def part(i: int, step: int) -> str:
        starts, ends = b.const(f"st{i}", np.array([0, i * D])), b.const(f"en{i}", np.array([step * S, (i + 1) * D]))
        axes, steps = b.const(f"ax{i}", np.array([2, 3])), b.const(f"sp{i}", np.array([step, 1]))
        return b.op("Slice", [x, starts, ends, axes, steps], (1, H, S, D))

    g = b.graph([_attend(b, part(0, 1), part(1, 1), part(2, 2))])
    assert templates(g) == ["attention"]
    check(g, be)


def test_reshape_views_split_aligned_digits_only():
    """A reshape is passed where every logical axis lands in one digit of the new shape without carry."""
    merged = View("t", (4, 6), (Affine(0, (6, 1)),))  # a (4, 6) view of a flat 24
    assert reshaped(merged, (24,), (4, 6)) == (Affine(0, (1, 0)), Affine(0, (0, 1)))
    straddles = identity("t", (16,))  # 16 heads from (4, 4): no affine index per digit
    assert reshaped(straddles, (16,), (4, 4)) is None
    carries = View("t", (3,), (Affine(2, (1,)),))  # elements 2..4 of a (2, 3): the second digit would carry
    assert reshaped(carries, (6,), (2, 3)) is None
    assert reshaped(View("t", (3,), (Affine(3, (1,)),)), (6,), (2, 3)) == (Affine(1, (0,)), Affine(0, (1,)))
