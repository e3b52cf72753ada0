"""GEMM tiles per shape and split-K (codegen/gpu/ops/gemm.py): the small-M shapes of batch-1 transformers and
decoding (M = 1) split K, the partial sums are added in a fixed order with bias and epilogue after; against
onnxruntime (rtol 1e-4, atol 1e-4: sums over K up to 768) and bit-identical from run to run."""

from __future__ import annotations

import numpy as np
import pytest
from gpu_harness import Builder, backend, check, random_feeds, run_gpu

from codegen.gpu import lower
from codegen.gpu.ops.gemm import LARGE, MEDIUM, THIN, gemm_plan


@pytest.fixture(scope="module")
def be():
    b = backend()
    yield b
    b.close()


def test_plans():
    assert gemm_plan(4096, 4096, 4096, 1).tile == LARGE and gemm_plan(4096, 4096, 4096, 1).splits == 1
    small = gemm_plan(128, 768, 768, 1)
    assert small.tile == MEDIUM and small.splits > 1 and small.k_split % 16 == 0
    assert small.splits * small.k_split >= 768 > (small.splits - 1) * small.k_split
    decode = gemm_plan(1, 768, 3072, 1)
    assert decode.tile == THIN and decode.splits == 16
    assert gemm_plan(128, 768, 40, 1).splits == 1  # K too short to split


@pytest.mark.parametrize(("m", "k", "n"), [(128, 768, 192), (1, 768, 256), (3, 500, 70), (40, 333, 64)])
def test_matmul_split_k_with_epilogue(be, m, k, n):
    b = Builder()
    x = b.input("x", (1, m, k))
    y = b.op("MatMul", [x, b.weight("w", (k, n), 0.05)], (1, m, n))
    z = b.op("Add", [b.op("Add", [y, b.weight("bias", (n,))], (1, m, n)), b.input("res", (1, m, n))], (1, m, n))
    out = b.op("Gelu", [z], (1, m, n))
    g = b.graph([out])
    templates = [s.dispatch.template for s in lower(g)[1]]
    if gemm_plan(m, n, k, 1).splits > 1:
        assert templates == ["gemm.comp.j2", "gemm_reduce.comp.j2"]  # the epilogue is in the reduction
    check(g, be, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("trans_b", "bias_shape"), [(1, (64,)), (0, (1, 64)), (1, (2, 64))])
def test_gemm_split_k_bias_and_transposes(be, trans_b, bias_shape):
    b = Builder()
    w = b.weight("w", (64, 640) if trans_b else (640, 64), 0.05)
    y = b.op(
        "Gemm", [b.input("x", (2, 640)), w, b.weight("c", bias_shape)], (2, 64), transB=trans_b, alpha=0.5, beta=2.0
    )
    g = b.graph([y])
    assert len(lower(g)[1]) == 2
    check(g, be, rtol=1e-4, atol=1e-4)


def test_split_k_is_deterministic(be):
    b = Builder()
    y = b.op("MatMul", [b.input("x", (7, 1024)), b.weight("w", (1024, 96), 0.05)], (7, 96))
    g = b.graph([y])
    feeds = random_feeds(g)
    first, second = run_gpu(g, feeds, be)[y], run_gpu(g, feeds, be)[y]
    assert first.tobytes() == second.tobytes()


def test_batched_einsum_split_k(be):
    b = Builder()
    y = b.op("Einsum", [b.input("a", (2, 3, 900)), b.input("b", (2, 900, 5))], (2, 3, 5), equation="bij,bjk->bik")
    check(b.graph([y]), be, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("a", "w"), [((37, 1, 96), (96, 160)), ((2, 5, 3, 64), (1, 64, 48))])
def test_batches_sharing_one_b_run_as_one_taller_gemm(be, a, w):
    """torchvision's ViT projects (sequence, batch = 1, embedding): 197 one-row GEMMs each reading the whole weight
    ran 0.41 ms on the H200; folded into one 197-row GEMM it is one weight read."""
    b = Builder()
    out = (*a[:-1], w[-1])
    y = b.op("MatMul", [b.input("x", a), b.weight("w", w, 0.05)], out)
    z = b.op("Relu", [b.op("Add", [y, b.weight("bias", (w[-1],))], out)], out)
    g = b.graph([z])
    gemm = lower(g)[1][0].dispatch
    assert gemm.params["M"] == int(np.prod(a[:-1])) and gemm.params["batch"] == 1
    check(g, be, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("c", "k", "size", "group", "stride"), [(256, 256, 7, 1, 1), (128, 192, 9, 2, 2), (96, 64, 4, 1, 1)]
)
def test_convs_with_few_output_pixels_split_k(be, c, k, size, group, stride):
    """A CNN's last stages (512 channels at 7 x 7 in resnet18: 8 workgroups, 0.32 ms each on the H200) split K like
    a small-M GEMM; bias, residual and ReLU are applied in the ordered reduction."""
    b = Builder()
    out = (1, k, -(-size // stride), -(-size // stride))
    x = b.input("x", (1, c, size, size))
    w, bias = b.weight("w", (k, c // group, 3, 3), 0.05), b.weight("bias", (k,))
    y = b.op("Conv", [x, w, bias], out, pads=[1, 1, 1, 1], strides=[stride, stride], group=group)
    z = b.op("Relu", [b.op("Add", [y, b.input("res", out)], out)], out)
    g = b.graph([z])
    assert [s.dispatch.template for s in lower(g)[1]] == ["gemm.comp.j2", "gemm_reduce.comp.j2"]
    check(g, be, rtol=1e-4, atol=1e-4)
