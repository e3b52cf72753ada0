"""Conformance on the GPU: every "light" model compiled GPU-first (`--devices gpu`: each op the GPU runs goes to
the GPU, the rest to the CPU) runs under runtime_min on Vulkan (lavapipe in CI) and matches its shipped expected
output at the onnx runner's tolerances."""

import numpy as np
import pytest
from gpu_harness import backend as vulkan_backend
from models import LIGHT_MODELS, light_expected, light_input, light_model

import runtime_min
from ragc.pipeline import compile_model

RTOL_EXPECTED = {"densenet121": 2e-3}  # from onnx.backend.test.case.model; 1e-3 for the others


@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_model_gpu_first(name, tmp_path):
    vulkan_backend()  # skips only where no Vulkan device exists at all
    path = light_model(name)
    result = compile_model(path, tmp_path / "plan", devices="gpu")
    gpu_ops = sum(len(p.ops) for p in result.partitions if p.device == "gpu")
    assert gpu_ops >= 0.9 * sum(len(p.ops) for p in result.partitions)
    plan = runtime_min.load(result.bundle)
    assert plan.fallbacks == {}
    out = plan.run(light_input(path))[plan.outputs[0].name]
    np.testing.assert_allclose(out, light_expected(name), rtol=RTOL_EXPECTED.get(name, 1e-3), atol=1e-7)
