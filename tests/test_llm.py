"""LLM bundles on the CPU: every step's logits against onnxruntime running the exported model with its own Concat
cache loop (fed the reference's tokens), greedy tokens where the margin is clear, sampling, hostile input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from hostile_fixtures import edit_json
from onnx import numpy_helper

import ragc
import runtime_min
from bench.llm_tiny import TinyConfig, ort_generate, tiny_decoder
from ragc.errors import ModelError
from ragc.llm.compile import compile_llm
from ragc.llm.rewrite import cache_layout
from runtime_min.generate.loop import tokens

TINYNET = Path(__file__).resolve().parent.parent / "examples" / "tinynet.onnx"
TARGET = "ryzen-ai-9-hx-370"  # a target file: compiling needs no profiling of this machine
CONFIGS = {
    "gpt2": TinyConfig(style="gpt2"),
    "llama": TinyConfig(style="llama", kv_heads=2, seed=1),
    "gpt2-hf": TinyConfig(style="gpt2", seed=2, hf_cache=True),  # torch's TorchScript export of a DynamicCache
    "llama-hf": TinyConfig(style="llama", kv_heads=2, seed=3, hf_cache=True),
}
CAPACITY, PREFILL, NEW = 24, 12, 10


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def llm(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    model = tiny_decoder(CONFIGS[request.param])
    onnx.save(model, folder / "model.onnx")
    compile_llm(folder / "model.onnx", folder / "plan", CAPACITY, PREFILL, devices="cpu", target=TARGET)
    with runtime_min.load(folder / "plan") as plan:
        yield model, plan


def check_steps(model: onnx.ModelProto, plan, prompt: np.ndarray, new: int, atol: float) -> None:
    """Each step's logits within tolerance when both are fed the reference's tokens; greedy tokens identical up to
    the first step whose reference top-two margin is not clear."""
    ref_tokens, ref_logits = ort_generate(model, prompt, new)
    seen: list[np.ndarray] = []

    def pick(logits: np.ndarray) -> int:
        seen.append(logits.copy())
        return ref_tokens[len(seen) - 1]

    assert list(tokens(plan, prompt, new, pick)) == ref_tokens
    assert len(seen) == new
    for step, (ours, ref) in enumerate(zip(seen, ref_logits, strict=True)):
        np.testing.assert_allclose(ours, ref, atol=atol, rtol=1e-3, err_msg=f"step {step}")
    greedy = list(plan.generate(prompt, new))
    for step, ref in enumerate(ref_logits):
        top = np.sort(ref)[-2:]
        if top[1] - top[0] < 10 * atol:
            break
        assert greedy[step] == ref_tokens[step], f"step {step}"


@pytest.mark.parametrize("length", [1, 5, PREFILL])
def test_every_step_matches_onnxruntime(llm, length):
    model, plan = llm
    prompt = np.random.default_rng(length).integers(0, 64, length)
    check_steps(model, plan, prompt, NEW, atol=1e-3)


def test_fills_the_cache_to_capacity(llm):
    model, plan = llm
    check_steps(model, plan, np.arange(PREFILL), CAPACITY - PREFILL + 1, atol=1e-3)


def test_sampling_is_seeded_and_greedy_deterministic(llm):
    _, plan = llm
    prompt = [3, 1, 4]
    assert list(plan.generate(prompt, 6)) == list(plan.generate(prompt, 6))
    sampled = [list(plan.generate(prompt, 6, temperature=1.0, seed=s)) for s in (7, 7, 8)]
    assert sampled[0] == sampled[1]
    assert list(plan.generate(prompt, 6, temperature=0.7, top_k=1)) == list(plan.generate(prompt, 6))
    first = next(iter(plan.generate(prompt, 6)))
    assert list(plan.generate(prompt, 6, stop=[first])) == [first]


def test_prompt_longer_than_the_plan_is_one_line(llm):
    _, plan = llm
    for prompt, new in ((np.arange(PREFILL + 1), 1), (np.arange(PREFILL), CAPACITY)):
        with pytest.raises(runtime_min.InputError, match="recompile with a larger --max-context") as info:
            plan.generate(prompt, new)
        assert "\n" not in str(info.value)
    with pytest.raises(runtime_min.InputError, match="vocabulary"):
        plan.generate([64], 2)


def test_model_without_cache_inputs_is_one_line(tmp_path):
    model = tiny_decoder(CONFIGS["gpt2"])
    kept = [i for i in model.graph.input if not i.name.startswith("past_key_values.")]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    onnx.save(model, tmp_path / "model.onnx")
    with pytest.raises(ModelError, match="not a decoder with a KV cache: no past_key_values") as info:
        compile_llm(tmp_path / "model.onnx", tmp_path / "plan", 16, devices="cpu", target=TARGET)
    assert "\n" not in str(info.value) and not (tmp_path / "plan").exists()


def test_plain_plan_has_no_generate(tmp_path):
    plan = ragc.compile(TINYNET, tmp_path / "plan", devices="cpu", target=TARGET).bundle
    with runtime_min.load(plan) as loaded, pytest.raises(runtime_min.InputError, match="not an LLM plan"):
        loaded.generate([1], 2)


def test_weights_are_stored_once(llm):
    """Both phases read one tensor store: it holds each weight once, so it is about the model's weight bytes."""
    model, plan = llm
    weights = sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer)
    assert not (plan.path / "prefill").exists() and sorted(plan.path.glob("tensors*")) == [plan.path / "tensors.bin"]
    assert (plan.path / "tensors.bin").stat().st_size <= 1.15 * weights


def test_an_llm_json_the_manifest_does_not_list_is_one_line(tmp_path, llm):
    """Version 1 kept llm.json outside the manifest: such a bundle is refused, naming the fix."""
    _, plan = llm
    shutil.copytree(plan.path, tmp_path / "plan")
    edit_json(tmp_path / "plan", "manifest.json", lambda m: m | {"files": _without(m["files"], "llm.json")})
    with runtime_min.load(tmp_path / "plan") as copy, pytest.raises(runtime_min.BundleError, match="version 1") as info:
        copy.generate([1], 2)
    assert "\n" not in str(info.value) and "recompile" in str(info.value)


def _without(files: dict, name: str) -> dict:
    return {k: v for k, v in files.items() if k != name}


def test_recompiling_over_a_version_1_bundle_replaces_its_prefill_folder(tmp_path, llm):
    model, plan = llm
    shutil.copytree(plan.path, tmp_path / "plan")
    shutil.copytree(plan.path, tmp_path / "plan" / "prefill")  # version 1 kept the prefill plan in prefill/
    onnx.save(model, tmp_path / "model.onnx")
    compile_llm(tmp_path / "model.onnx", tmp_path / "plan", CAPACITY, PREFILL, devices="cpu", target=TARGET)
    assert not (tmp_path / "plan" / "prefill").exists()
    with runtime_min.load(tmp_path / "plan") as again:
        assert len(list(again.generate([1, 2], 3))) == 3


@pytest.mark.parametrize(
    "change",
    [
        {"version": 1},
        {"max_context": "24"},
        {"cache": {"x": "present.0.key"}},
        {"prefill_schedule": "../schedule.json"},
        {"prefill_schedule": "schedule.json"},  # a listed file, but the decode plan's
        {"last_position": 3},
        {"last_position": "input_ids_again"},  # no such prefill input
        {"version": 2},  # version 2's prefill has no last_position input
    ],
)
def test_tampered_llm_json_is_one_line(tmp_path, llm, change):
    _, plan = llm
    shutil.copytree(plan.path, tmp_path / "plan")
    doc = json.loads((tmp_path / "plan" / "llm.json").read_text()) | change
    (tmp_path / "plan" / "llm.json").write_text(json.dumps(doc))
    with pytest.raises(runtime_min.BundleError, match="llm.json") as info:
        runtime_min.load(tmp_path / "plan")  # the manifest's hash of llm.json
    assert "\n" not in str(info.value)
    with runtime_min.load(tmp_path / "plan", verify=False) as copy, pytest.raises(runtime_min.BundleError) as info:
        copy.generate([1], 2)
    assert "llm.json" in str(info.value) and "\n" not in str(info.value)


def test_rewrite_refuses_caches_it_cannot_place():
    model = tiny_decoder(CONFIGS["gpt2"])
    concat = next(n for n in model.graph.node if n.op_type == "Concat" and n.input[0].startswith("past_key_values."))
    concat.attribute[0].i = 1
    with pytest.raises(ModelError, match="along axis 1, not 2"):
        cache_layout(model)
    concat.op_type = "Add"
    with pytest.raises(ModelError, match="no Concat\\(past, new, axis=2\\) grows"):
        cache_layout(model)
    layout = cache_layout(tiny_decoder(CONFIGS["llama"]))
    assert set(layout.heads.values()) == {2} and layout.has_positions and len(layout.concats) == 4


def test_each_phase_keeps_its_own_predicted_figures(tmp_path):
    """One manifest holds the decode plan's figures; llm.json the prefill plan's, which `ragc simulate` prints."""
    from ragc.cli.llm import llm_summary

    onnx.save(tiny_decoder(CONFIGS["gpt2"]), tmp_path / "model.onnx")
    result = compile_llm(tmp_path / "model.onnx", tmp_path / "plan", CAPACITY, PREFILL, devices="cpu", target=TARGET)
    summary = llm_summary(result.bundle)
    for phase in ("prefill", "decode"):
        info = getattr(result, phase).info
        assert summary[phase]["predicted_ms"] == info["predicted_ms"]
        assert summary[phase]["baselines_ms"] == info["baselines_ms"]


def test_a_version_2_bundle_still_generates(tmp_path, monkeypatch):
    """llm.json version 2 (prefill returning every prompt row's logits, no last_position) is still read: made here
    by compiling without the last-row rewrite and writing version 2's llm.json; its tokens are version 3's."""
    import ragc.llm.rewrite as rewrite

    model = tiny_decoder(CONFIGS["gpt2"])
    onnx.save(model, tmp_path / "model.onnx")
    compile_llm(tmp_path / "model.onnx", tmp_path / "v3", CAPACITY, PREFILL, devices="cpu", target=TARGET)
    monkeypatch.setattr(rewrite, "_last_row_only", lambda model: None)
    compile_llm(tmp_path / "model.onnx", tmp_path / "v2", CAPACITY, PREFILL, devices="cpu", target=TARGET)
    edit_json(
        tmp_path / "v2", "llm.json", lambda d: {k: v for k, v in d.items() if k != "last_position"} | {"version": 2}
    )
    prompt = np.array([3, 1, 4, 1, 5])
    with runtime_min.load(tmp_path / "v2") as v2, runtime_min.load(tmp_path / "v3") as v3:
        assert list(v2.generate(prompt, NEW)) == list(v3.generate(prompt, NEW)) == ort_generate(model, prompt, NEW)[0]
