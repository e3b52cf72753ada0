"""Cooperative-matrix GEMM and convolution kernels. The SPIR-V rewrite (NV -> KHR) is checked everywhere; running
them needs a device with VK_KHR_cooperative_matrix and the 16x8x16 fp16 shape (the lent H200: see KERNELS.md for
the command), so those tests skip on lavapipe."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from gpu_harness import Builder, backend, prepare, random_feeds, reference, run_gpu

from codegen.gpu import emit, glsl
from codegen.gpu.ops.eltwise import identity_fragment
from codegen.gpu.ops.gemm import COOPMAT, COOPMAT_SHAPE, gemm_params
from codegen.gpu.precision import Precision, choose, narrow
from codegen.gpu.spirv_coopmat import KHR, KHR_CAPABILITY, NV_CAPABILITY
from ragc.precision import TOLERANCE, error
from runtime_min.backends.gpu_program import kernel_needs, spirv_scan

COOPMAT_PRECISION = Precision("mixed", "float16", "float32", coopmat=True)


def _opcodes(spirv: bytes) -> dict[int, list[list[int]]]:
    words, found, i = np.frombuffer(spirv, "<u4"), {}, 5
    while i < words.size:
        count, op = int(words[i]) >> 16, int(words[i]) & 0xFFFF
        found.setdefault(op, []).append([int(w) for w in words[i + 1 : i + count]])
        i += count
    return found


def _kernel(m: int = 200, n: int = 136, k: int = 72) -> bytes:
    params, _ = gemm_params(m, n, k, 1, COOPMAT, a_rs=k, a_cs=1, a_base="0u", b_rs=n, b_cs=1, b_base="0u")
    params.update(a_vec4=False, b_vec4=False, epilogue=identity_fragment("ragc_epilogue").function)
    return glsl.build("coopmat_gemm.comp.j2", {**params, "ragc_dtypes": ("float32", "float16", "float16")})


def test_the_kernel_is_khr_cooperative_matrix_spirv():
    kernel = _kernel()
    ops = _opcodes(kernel)
    assert [KHR_CAPABILITY] in ops[17] and [NV_CAPABILITY] not in ops[17]
    assert not set(ops) & set(range(5358, 5363))  # no NV instruction left
    assert all(op in ops for op in KHR.values() if op != 4460)
    uses = {}  # type id -> use constant id, each matrix type with its own use (A, B, accumulator)
    for result, *_, use in ops[4456]:
        uses[result] = use
    assert len(uses) == 3 and len(set(uses.values())) == 3
    assert {"cooperativeMatrix", "vulkanMemoryModel", "shaderFloat16"} <= set(kernel_needs(spirv_scan(kernel, "k")[1]))


def test_gemms_are_marked_for_cooperative_matrices_only_where_the_device_has_the_shape():
    features = {COOPMAT_SHAPE, "subgroupSizeControl", "shaderFloat16"}
    assert choose("mixed", features).coopmat and choose("fp16", features).coopmat
    assert not choose("bf16", features).coopmat and not choose("mixed", {"subgroupSizeControl"}).coopmat


def _gemm_graph(m: int, n: int, k: int, bias: bool) -> tuple:
    b = Builder()
    x = b.input("x", (m, k))
    h = b.op("Relu", [x], (m, k))
    inputs = [h, b.weight("w", (n, k), 0.1)] + ([b.weight("c", (n,))] if bias else [])
    y = b.op("Gemm", inputs, (m, n), transB=1)
    return b.graph([b.op("Tanh", [y], (m, n))]), y


def test_the_lowering_picks_the_cooperative_matrix_kernel():
    graph, _ = _gemm_graph(130, 200, 96, bias=True)
    program = emit(graph, "p1", precision=COOPMAT_PRECISION).files["p1.gpu.json"].decode()
    assert COOPMAT_SHAPE in program and '"subgroup_size": 32' in program
    deep, _ = _gemm_graph(300, 77, 1000, bias=True)  # the scalar plan would split K; a coopmat tile does not
    assert COOPMAT_SHAPE in emit(deep, "p1", precision=COOPMAT_PRECISION).files["p1.gpu.json"].decode()
    small, _ = _gemm_graph(16, 200, 96, bias=True)  # M below COOPMAT_MIN: the scalar tile
    assert COOPMAT_SHAPE not in emit(small, "p1", precision=COOPMAT_PRECISION).files["p1.gpu.json"].decode()
    assert next(op for op in narrow(graph, COOPMAT_PRECISION).ops if op.op_type == "Gemm").attrs["ragc_coopmat"]


@pytest.fixture(scope="module")
def be():
    b = backend()
    if not b.dev.features.get(COOPMAT_SHAPE) or not b.dev.features.get("subgroupSizeControl"):
        b.close()
        pytest.skip(f"{b.device_name} has no cooperative matrix {COOPMAT_SHAPE} (run on the H200)")
    yield b
    b.close()


def _check(be, graph) -> None:
    feeds = random_feeds(graph)
    artifact = emit(graph, "p1", precision=COOPMAT_PRECISION)
    assert COOPMAT_SHAPE in artifact.files["p1.gpu.json"].decode()
    with tempfile.TemporaryDirectory() as tmp:
        exe = prepare(be, artifact, graph, Path(tmp))
    got = exe.run(feeds)
    exe.close()
    assert error(got, reference(graph, feeds)) <= TOLERANCE["mixed"]


@pytest.mark.parametrize(("m", "n", "k", "bias"), [(128, 128, 64, False), (130, 200, 96, True), (300, 77, 1000, True)])
def test_coopmat_gemm_on_device(be, m, n, k, bias):
    _check(be, _gemm_graph(m, n, k, bias)[0])


@pytest.mark.parametrize(("c", "hw", "k", "stride"), [(64, 28, 3, 1), (32, 57, 1, 2), (96, 28, 3, 2)])
def test_coopmat_implicit_gemm_convolution_on_device(be, c, hw, k, stride):
    b = Builder()
    x = b.input("x", (1, c, hw, hw))
    out = (hw + 2 * (k // 2) - k) // stride + 1
    y = b.op("Conv", [x, b.weight("w", (128, c, k, k), 0.1), b.weight("b", (128,))], (1, 128, out, out),
             pads=[k // 2] * 4, strides=[stride, stride])  # fmt: skip
    _check(be, b.graph([b.op("Relu", [y], (1, 128, out, out))]))


def test_fp32_plans_never_use_cooperative_matrices(be):
    graph, _ = _gemm_graph(256, 256, 64, bias=False)
    got = run_gpu(graph, random_feeds(graph), be)
    assert error(got, reference(graph, random_feeds(graph))) <= 1e-4
