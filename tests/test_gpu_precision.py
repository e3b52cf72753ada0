"""Reduced-precision GPU kernels on lavapipe: fp16/bf16 storage (and fp16 GEMM arithmetic where the device has
shaderFloat16) against onnxruntime fp32, with the tolerances ragc.precision states; which tensors narrow; what the
program records and the runtime checks."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from gpu_harness import Builder, backend, prepare, random_feeds, reference

from codegen.gpu import emit, storage_plan
from codegen.gpu.precision import Precision, choose
from ragc.precision import TOLERANCE, error
from runtime_min.errors import BackendUnavailable, BundleError

PRECISIONS = ("fp16", "mixed", "bf16")


@pytest.fixture(scope="module")
def be():
    b = backend()
    yield b
    b.close()


def features(be) -> set[str]:
    return {k for k, on in be.dev.features.items() if on}


def run(be, graph, precision: Precision, feeds=None):
    feeds = feeds if feeds is not None else random_feeds(graph)
    artifact = emit(graph, "p1", precision=precision)
    with tempfile.TemporaryDirectory() as tmp:
        exe = prepare(be, artifact, graph, Path(tmp))
    try:
        return exe.run(feeds), reference(graph, feeds), artifact
    finally:
        exe.close()


def check(be, graph, name: str, feeds=None):
    got, want, artifact = run(be, graph, choose(name, features(be)), feeds)
    for out in graph.outputs:
        assert got[out].dtype == want[out].dtype == np.float32, out  # plan outputs keep the model's dtypes
    assert error(got, want) <= TOLERANCE[name], (name, error(got, want))
    return artifact


def cnn() -> Builder:
    b = Builder()
    x = b.input("x", (2, 3, 17, 19))
    c = b.op("Conv", [x, b.weight("w", (32, 3, 3, 3), 0.3), b.weight("cb", (32,))], (2, 32, 17, 19), pads=[1] * 4)
    r = b.op("Relu", [c], (2, 32, 17, 19))
    d = b.op("Conv", [r, b.weight("dw", (32, 1, 3, 3), 0.3)], (2, 32, 17, 19), pads=[1] * 4, group=32)
    p = b.op("MaxPool", [d], (2, 32, 8, 9), kernel_shape=[2, 2], strides=[2, 2])
    a = b.op("GlobalAveragePool", [p], (2, 32, 1, 1))
    f = b.op("Flatten", [a], (2, 32))
    g = b.op("Gemm", [f, b.weight("gw", (10, 32), 0.2), b.weight("gb", (10,))], (2, 10), transB=1)
    b.outputs = [b.op("Softmax", [g], (2, 10), axis=-1)]
    return b


def encoder() -> Builder:
    b = Builder()
    x = b.input("x", (1, 24, 64))
    n = b.op("LayerNormalization", [x, b.weight("s", (64,)), b.weight("o", (64,))], (1, 24, 64), axis=-1)
    q = b.op("MatMul", [n, b.weight("wq", (64, 64), 0.1)], (1, 24, 64))
    k = b.op(
        "Transpose", [b.op("MatMul", [n, b.weight("wk", (64, 64), 0.1)], (1, 24, 64))], (1, 64, 24), perm=[0, 2, 1]
    )
    s = b.op("Softmax", [b.op("MatMul", [q, k], (1, 24, 24))], (1, 24, 24), axis=-1)
    v = b.op("MatMul", [s, n], (1, 24, 64))
    h = b.op("Gelu", [b.op("MatMul", [v, b.weight("w1", (64, 3072), 0.05)], (1, 24, 3072))], (1, 24, 3072))
    y = b.op("MatMul", [h, b.weight("w2", (3072, 64), 0.02)], (1, 24, 64))  # K = 3072: split-K
    b.outputs = [b.op("ReduceMean", [b.op("Add", [y, x], (1, 24, 64)), b.const("ax", [-1], "int64")], (1, 24, 1))]
    return b


@pytest.mark.parametrize("name", PRECISIONS)
def test_cnn_within_tolerance(be, name):
    b = cnn()
    check(be, b.graph(b.outputs), name)


@pytest.mark.parametrize("name", PRECISIONS)
def test_encoder_within_tolerance(be, name):
    b = encoder()
    check(be, b.graph(b.outputs), name)


def test_inner_tensors_narrow_and_the_partition_boundary_does_not():
    b = cnn()
    graph = b.graph(b.outputs)
    plan = storage_plan(graph, choose("mixed"))
    assert "x" not in plan and b.outputs[0] not in plan  # inputs and outputs keep their dtypes
    assert plan["w"] == plan["t1"] == "float16"  # weights, and activations in between (t0 is fused away)
    assert set(storage_plan(graph, choose("bf16")).values()) == {"bfloat16"}
    assert storage_plan(graph, Precision()) == {}


def test_a_kernel_without_16_bit_storage_keeps_its_tensors_fp32():
    b = Builder()
    x = b.input("x", (1, 4, 8, 8))
    r = b.op("Relu", [x], (1, 4, 8, 8))
    scales = b.const("scales", [1.0, 1.0, 2.0, 2.0], "float32")
    up = b.op("Resize", [r, "", scales], (1, 4, 16, 16), mode="nearest")  # resize.comp.j2 reads float32 only
    out = b.op("Sigmoid", [b.op("Relu", [up], (1, 4, 16, 16))], (1, 4, 16, 16))
    plan = storage_plan(b.graph([out]), choose("fp16"))
    assert r not in plan and up not in plan


def test_layernorm_statistics_stay_fp32(be):
    b = Builder()
    x = b.input("x", (4, 32))
    y = b.op("LayerNormalization", [x, b.weight("s", (32,)), b.weight("o", (32,))], (4, 32), axis=-1)
    b.tensors["mean"] = type(b.tensors[y])("mean", (4, 1), "float32")
    b.ops[-1].outputs.append("mean")
    z = b.op("Mul", [y, "mean"], (4, 32))
    plan = storage_plan(b.graph([z]), choose("mixed"))
    assert y in plan and "mean" not in plan


def test_program_records_what_kernels_need(be):
    b = encoder()
    graph = b.graph(b.outputs)
    _, _, artifact = run(be, graph, Precision("fp16", "float16", "float16"))
    program = json.loads(artifact.files["p1.gpu.json"])
    needs = set().union(*program["kernel_requires"].values())
    assert {"shaderFloat16", "storageBuffer16BitAccess"} <= needs
    bf16 = json.loads(emit(graph, "p1", precision=choose("bf16")).files["p1.gpu.json"])
    assert {t["dtype"] for t in bf16["tensors"].values()} == {"float32", "uint16"}
    assert "shaderFloat16" not in set().union(*bf16["kernel_requires"].values())  # storage only


def test_fp16_arithmetic_only_where_the_device_has_it():
    assert choose("fp16", {"shaderFloat16"}).gemm_math == "float16"
    assert choose("fp16", set()).gemm_math == "float32"  # fp16 storage with fp32 math
    assert choose("mixed", {"shaderFloat16"}).gemm_math == "float32"
    assert "storage" in choose("bf16", {"shaderFloat16"}).describe()
    with pytest.raises(ValueError, match="not one of"):
        choose("fp8")


def test_a_device_without_a_kernel_feature_is_refused_at_load(be, tmp_path):
    b = encoder()
    graph = b.graph(b.outputs)
    artifact = emit(graph, "p1", precision=Precision("fp16", "float16", "float16"))
    saved = be.dev.features["shaderFloat16"]
    be.dev.features["shaderFloat16"] = False
    try:
        with pytest.raises(BackendUnavailable, match="lacks shaderFloat16, which kernel .* needs"):
            prepare(be, artifact, graph, tmp_path)
    finally:
        be.dev.features["shaderFloat16"] = saved


def _hostile(be, tmp_path, edit) -> None:
    b = cnn()
    graph = b.graph(b.outputs)
    artifact = emit(graph, "p1", precision=choose("mixed"))
    program = json.loads(artifact.files["p1.gpu.json"])
    edit(program)
    artifact.files["p1.gpu.json"] = json.dumps(program).encode()
    prepare(be, artifact, graph, tmp_path).close()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p["kernel_requires"].update({k: ["warpDrive"] for k in p["kernel_requires"]}), "does not know"),
        (lambda p: p["kernel_requires"].update({k: [] for k in p["kernel_requires"]}), "does not declare"),
        (lambda p: p["kernel_requires"].update({"../x.spv": []}), "x.spv"),
        (lambda p: p.update(kernel_requires=["a"]), "kernel_requires"),
        (lambda p: p["dispatches"][0].update(subgroup_size=24), "power of two"),
        (lambda p: p["dispatches"][0].update(subgroup_size="32"), "subgroup_size"),
    ],
)
def test_hostile_requirements_are_refused(be, tmp_path, edit, message):
    with pytest.raises(BundleError, match=message):
        _hostile(be, tmp_path, edit)
