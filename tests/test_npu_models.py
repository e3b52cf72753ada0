"""Whole models on the NPU alone (the HX 370 target, `devices="npu"`): a Llama-style decoder (RMSNorm, RoPE as a
GEMM, causal grouped-query Attention, SwiGLU from x * sigmoid(x)), a BERT-style encoder, MobileNetV2 and an int8
GEMM each compile to NPU partitions (MobileNetV2's global pooling runs on the CPU between its last conv and the
classifier) and, on the bf16 simulator, match onnxruntime. Deep bf16 stacks compound
rounding, so the tolerance is wider than one kernel's: 5% of the output's scale."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest

import runtime_min
from ragc.pipeline import compile_model
from ragc.profiler import workloads as models

TINY_LLAMA = {"dim": 64, "heads": 4, "kv_heads": 2, "hidden": 128, "layers": 2, "vocab": 100}
MODELS = {
    "llama": lambda: models.llama(16, 2, TINY_LLAMA),
    "bert": lambda: models.bert_base(16, 64, 4, 2),
    "mobilenet_v2": lambda: models.mobilenet_v2(48),
    "gemm_int8": lambda: models.gemm(128, "int8"),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_runs_whole_on_the_simulated_npu(name, tmp_path):
    path = models.save(MODELS[name](), tmp_path / f"{name}.onnx")
    result = compile_model(path, tmp_path / "plan", target="ryzen-ai-9-hx-370", devices="npu")
    on_cpu = [op for p in result.partitions if p.device == "cpu" for op in p.ops]
    assert all(op.startswith(("GlobalAveragePool", "Flatten")) for op in on_cpu), on_cpu
    plan = runtime_min.load(tmp_path / "plan", npu="sim")
    spec = plan.inputs[0]
    rng = np.random.default_rng(3)
    if spec.dtype == "int8":
        x = rng.integers(-100, 100, spec.shape).astype(np.int8)
    else:
        x = rng.standard_normal(spec.shape).astype(np.float32)
    got = plan.run({spec.name: x})[plan.outputs[0].name]
    want = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {spec.name: x})[0]
    if spec.dtype == "int8":
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    else:
        np.testing.assert_allclose(got, want, rtol=5e-2, atol=5e-2 * float(np.abs(want).max()))


def test_same_model_same_target_gives_a_byte_identical_npu_bundle(tmp_path):
    path = models.save(MODELS["llama"](), tmp_path / "llama.onnx")
    for name in ("a", "b"):
        compile_model(path, tmp_path / name, target="ryzen-ai-9-hx-370", devices="npu")
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert any(f.endswith(".npu.json") for f in files)
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
