"""LLM bundles on the GPU (lavapipe here) and through the CLI: steps against onnxruntime, each phase's split and its
simulated figures for the HX 370, `ragc run --generate`."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from test_llm import TARGET, check_steps

import runtime_min
from bench.llm_tiny import TinyConfig, tiny_decoder
from ragc.cli import main
from ragc.llm.compile import compile_llm


def test_gpu_plan_matches_onnxruntime(tmp_path):
    pytest.importorskip("vulkan")
    model = tiny_decoder(TinyConfig(style="llama", kv_heads=2, layers=1, seed=2))
    onnx.save(model, tmp_path / "model.onnx")
    compile_llm(tmp_path / "model.onnx", tmp_path / "plan", 12, 6, devices="gpu", target=TARGET)
    with runtime_min.load(tmp_path / "plan") as plan:
        if plan.fallbacks:
            pytest.skip(f"no Vulkan device: {plan.fallbacks}")
        assert {s.device for s in plan.steps} == {"gpu"}
        check_steps(model, plan, np.array([5, 9, 2]), 8, atol=2e-3)


def test_cli_compile_simulate_generate(tmp_path):
    onnx.save(tiny_decoder(TinyConfig(layers=1)), tmp_path / "model.onnx")
    (tmp_path / "prompt.txt").write_text("1 2 3\n")
    runner, plan = CliRunner(), str(tmp_path / "plan")
    base = ["compile", str(tmp_path / "model.onnx"), "-o", plan, "--target", TARGET, "--devices", "cpu"]
    done = runner.invoke(main, [*base, "--llm", "--max-context", "16", "--prefill", "8"])
    assert done.exit_code == 0, done.output
    assert "time to first token" in done.output and "(simulated)" in done.output and "published by AMD" in done.output
    again = runner.invoke(main, [*base, "--llm", "--max-context", "16"])  # over an LLM bundle: rewritten
    assert again.exit_code == 0, again.output
    shown = runner.invoke(main, ["simulate", plan])
    assert shown.exit_code == 0 and "tokens/s (simulated)" in shown.output
    ran = runner.invoke(main, ["run", plan, "--generate", "4", "--prompt-ids", str(tmp_path / "prompt.txt")])
    assert ran.exit_code == 0 and "decode" in ran.output and "tokens/s (measured here)" in ran.output, ran.output
    bad = runner.invoke(main, [*base, "--llm"])
    assert bad.exit_code == 2 and "--llm needs --max-context" in bad.output
    both = runner.invoke(main, [*base, "--llm", "--max-context", "16", "--variants"])
    assert both.exit_code == 2 and "--variants and --llm do not combine" in both.output
