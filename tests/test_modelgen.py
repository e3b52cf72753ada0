"""modelgen: the models built in code (evaluation set and the random models the profile times whole)."""

from __future__ import annotations

import onnx
import pytest

from ragc.profiler.modelgen import random_cnn, random_transformer, to_graphs
from ragc.profiler.zoo import generated_models


@pytest.mark.parametrize("build", [random_cnn, random_transformer])
def test_random_models_are_valid_and_deterministic(build):
    for seed in (1, 2, 3):
        model = build(seed)
        onnx.checker.check_model(model, full_check=True)
        assert build(seed).SerializeToString() == model.SerializeToString()
    assert build(1).SerializeToString() != build(2).SerializeToString()


def test_random_cnns_mix_real_structures():
    ops = {op.op_type for seed in range(1001, 1009) for op in random_cnn(seed).graph.node}
    assert {"Conv", "Add", "Concat", "Transpose", "Clip", "GlobalAveragePool", "Gemm"} <= ops


def test_random_transformers_differ_from_the_evaluation_set():
    evaluated = {m.graph.name for m in generated_models().values()}
    assert not {random_transformer(seed).graph.name for seed in range(100)} & evaluated


def test_to_graphs_runs_the_front_end():
    graphs = to_graphs({"a": random_cnn(7)})
    assert list(graphs) == ["a"] and graphs["a"].ops and all(t.shape is not None for t in graphs["a"].tensors.values())


def test_a_gpu_times_every_random_model_even_when_quick():
    from ragc.profiler.context import context_graphs
    from ragc.profiler.profile import VK_DEVICE_TYPE_CPU, gpu_context_graphs

    quick = context_graphs(quick=True)
    gpu = {"gpus": [{"name": "a GPU", "device_type": 2}]}
    lavapipe = {"gpus": [{"name": "llvmpipe", "device_type": VK_DEVICE_TYPE_CPU}]}
    assert [n for n, _ in gpu_context_graphs(gpu, quick, True)] == [n for n, _ in context_graphs(quick=False)]
    assert gpu_context_graphs(lavapipe, quick, True) is quick and gpu_context_graphs(gpu, quick, False) is quick
