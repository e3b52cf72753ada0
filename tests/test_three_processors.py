"""Cross-compiled three-processor plans (CPU + GPU + NPU) for the Ryzen AI 9 HX 370 target, run end to end
here: CPU partitions on onnxruntime, GPU partitions on Vulkan (lavapipe), NPU partitions on the bf16 simulator.
NPU partitions compute in bf16, so outputs are compared with onnxruntime at the NPU tolerance."""

import json

import numpy as np
import onnxruntime
import pytest
from gpu_harness import backend as vulkan_backend
from models import light_input, light_model, save
from npu_fixtures import assert_close_bf16

import runtime_min
from ragc.pipeline import compile_model
from ragc.profiler.modelgen import transformer

TARGET = "ryzen-ai-9-hx-370"


def _run_three_ways(model_path, out, place, feeds):
    vulkan_backend()  # skips when this machine has no Vulkan device at all
    result = compile_model(model_path, out, target=TARGET, place=place)
    devices = {p.device for p in result.partitions}
    assert devices == {"cpu", "gpu", "npu"}, devices
    schedule = json.loads((out / "schedule.json").read_text())
    assert all("fallback" in p for p in schedule["partitions"] if p["device"] != "cpu")
    plan = runtime_min.load(out, npu="sim")
    assert plan.fallbacks == {}
    reference = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"]).run(None, feeds)
    got = plan.run(feeds)
    for spec, want in zip(plan.outputs, reference, strict=True):
        assert_close_bf16(got[spec.name], want)
    return plan, result


def test_bert_style_encoder_on_three_processors(tmp_path):
    model = save(transformer(seq=16, dim=64, heads=4, blocks=2), tmp_path / "encoder.onnx")
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 16, 64)).astype(np.float32)}
    plan, result = _run_three_ways(
        model, tmp_path / "plan", ["MatMul=npu", "Softmax=gpu", "LayerNormalization=gpu"], feeds
    )
    assert result.predicted_ms > 0
    npu_steps = [s for s in plan.last_step_times() if s["device"] == "npu"]
    assert npu_steps


def test_light_resnet50_on_three_processors(tmp_path):
    path = light_model("resnet50")
    _run_three_ways(path, tmp_path / "plan", ["Gemm=npu", "Conv=gpu"], light_input(path))


def test_cross_compiled_plan_simulates_without_hardware(tmp_path):
    model = save(transformer(seq=8, dim=32, heads=2, blocks=1), tmp_path / "encoder.onnx")
    result = compile_model(model, tmp_path / "plan", target=TARGET)
    manifest = json.loads((tmp_path / "plan" / "manifest.json").read_text())
    assert manifest["chip_id"].endswith(TARGET)
    assert set(manifest["baselines_ms"]) == {"cpu", "gpu", "npu"}
    assert manifest["predicted_ms"] <= min(manifest["baselines_ms"].values()) + 1e-6
    assert result.gap is not None


@pytest.mark.parametrize("disabled", ["gpu", "npu", "gpu,npu"])
def test_missing_processors_fall_back_to_the_cpu(tmp_path, monkeypatch, disabled):
    model = save(transformer(seq=8, dim=32, heads=2, blocks=1), tmp_path / "encoder.onnx")
    compile_model(model, tmp_path / "plan", target=TARGET, place=["MatMul=npu", "Softmax=gpu"])
    monkeypatch.setenv("RAGC_DISABLE", disabled)
    feeds = {"x": np.random.default_rng(1).standard_normal((1, 8, 32)).astype(np.float32)}
    with pytest.warns(runtime_min.RuntimeMinWarning):
        plan = runtime_min.load(tmp_path / "plan", npu="sim")
    reference = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    assert_close_bf16(plan.run(feeds)[plan.outputs[0].name], reference)
