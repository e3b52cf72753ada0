"""Conformance: every "light" model shipped with onnx compiles, runs under runtime_min, and matches both its
shipped expected output (the onnx runner's tolerances) and onnxruntime on the original model (rtol 1e-4),
as one partition and cut into four."""

import numpy as np
import onnxruntime
import pytest
from models import LIGHT_MODELS, light_expected, light_input, light_model

import runtime_min
from ragc.frontend import load_model
from ragc.pipeline import compile_model

RTOL_EXPECTED = {"densenet121": 2e-3}  # from onnx.backend.test.case.model; 1e-3 for the others


def _cuts(path: str, pieces: int) -> list[str]:
    ops = [op.name for op in load_model(path).graph.ops]
    return [ops[len(ops) * i // pieces] for i in range(1, pieces)]


@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_model(name, tmp_path):
    path = light_model(name)
    feeds = light_input(path)
    reference = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    expected = light_expected(name)
    for label, cuts in (("whole", []), ("cut", _cuts(path, 4))):
        result = compile_model(path, tmp_path / label, cut_before=cuts, devices="cpu")
        assert len(result.partitions) == (1 if not cuts else 4)
        plan = runtime_min.load(result.bundle)
        out = plan.run(feeds)[plan.outputs[0].name]
        np.testing.assert_allclose(out, expected, rtol=RTOL_EXPECTED.get(name, 1e-3), atol=1e-7)
        np.testing.assert_allclose(out, reference, rtol=1e-4, atol=1e-6)
