"""modelgen: the models built in code (evaluation set and the random models the profile times whole)."""

from __future__ import annotations

import onnx
import pytest

from ragc.profiler.archgen import random_convnext, random_decoder, random_resnet
from ragc.profiler.modelgen import random_cnn, random_transformer, to_graphs
from ragc.profiler.zoo import generated_models


@pytest.mark.parametrize("build", [random_cnn, random_transformer, random_resnet, random_convnext, random_decoder])
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


def test_architecture_models_lower_to_ragcs_fused_gpu_kernels():
    """The decoders' RMSNorm and rotary embeddings, as HF exports them, are found by the GPU patterns (so their
    samples price the kernels real Llamas run), and a ResNet's convs are GEMMs."""
    from codegen.gpu.emit import lower

    def templates(model: onnx.ModelProto) -> set[str]:
        return {step.dispatch.template.split(".")[0] for step in lower(to_graphs({"m": model})["m"])[1]}

    llama = next(
        random_decoder(s) for s in range(5000, 5100) if "Sigmoid" in {n.op_type for n in random_decoder(s).graph.node}
    )
    assert {"layernorm", "attention", "gemm"} <= templates(llama)
    assert "rotate_half" not in templates(llama) and "eltwise" not in templates(llama)
    assert "gemm" in templates(random_resnet(3001)) and "conv_direct" in templates(random_convnext(4002))


def test_context_families_take_their_first_seeds_when_quick():
    from ragc.profiler.context import FAMILIES, context_graphs

    quick = [name for name, _ in context_graphs(quick=True)]
    assert quick == [f"random_{f}_{seed}" for f, (_, seeds, first) in FAMILIES.items() for seed in seeds[:first]]
    assert len(context_graphs(quick=False)) == sum(len(seeds) for _, seeds, _ in FAMILIES.values())


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
