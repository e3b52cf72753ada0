"""The `ragc` command line, end to end in a subprocess: outputs, exit codes, and one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
from models import conv_bn_relu_model, save


def ragc(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ragc.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def assert_one_line_error(result, pattern):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert pattern in lines[0], lines[0]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save(conv_bn_relu_model(), tmp_path_factory.mktemp("cli") / "model.onnx")


@pytest.fixture(scope="module")
def plan(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "plan"
    result = ragc("compile", model, "-o", out, "--cut", "conv2", "--devices", "cpu")
    assert result.returncode == 0, result.stderr
    assert "p1" in result.stdout and "wrote" in result.stdout
    return out


def test_help_lists_every_command():
    result = ragc("--help")
    for command in ("compile", "run", "inspect", "validate"):
        assert command in result.stdout


def test_inspect_json_keys(plan):
    summary = json.loads(ragc("inspect", plan, "--json").stdout)
    assert set(summary) >= {"predicted_ms", "solver", "gap", "partitions"}
    assert [p["device"] for p in summary["partitions"]] == ["cpu", "cpu"]
    assert all(set(p) >= {"id", "device", "ops", "predicted_ms"} for p in summary["partitions"])


def test_run_with_input_file_writes_outputs(plan, tmp_path):
    np.save(tmp_path / "x.npy", np.ones((1, 3, 16, 16), np.float32))
    result = ragc("run", plan, "--input", f"x={tmp_path / 'x.npy'}", "--output-dir", tmp_path / "out", "--repeat", 3)
    assert result.returncode == 0, result.stderr
    assert "median latency over 3 run(s)" in result.stdout
    assert np.load(tmp_path / "out" / "y.npy").shape == (1, 10)


def test_validate_passes(plan, model):
    result = ragc("validate", plan, "--model", model)
    assert result.returncode == 0 and "PASS" in result.stdout


def test_validate_fails_beyond_tolerance(plan, model, tmp_path):
    other = conv_bn_relu_model()
    other.graph.initializer[-1].float_data[:] = []  # a different model: fc bias changed
    other.graph.initializer[-1].raw_data = np.full(10, 5.0, np.float32).tobytes()
    refused = ragc("validate", plan, "--model", save(other, tmp_path / "other.onnx"))
    assert_one_line_error(refused, "not the model this plan was compiled from")
    result = ragc("validate", plan, "--model", tmp_path / "other.onnx", "--any-model")
    assert result.returncode == 1 and "FAIL" in result.stdout


def test_missing_model(tmp_path):
    assert_one_line_error(
        ragc("compile", tmp_path / "nope.onnx", "-o", tmp_path / "p", "--devices", "cpu"), "does not exist"
    )


def test_dynamic_shape_without_shape_option(tmp_path):
    path = save(conv_bn_relu_model(batch="N"), tmp_path / "dyn.onnx")
    assert_one_line_error(ragc("compile", path, "-o", tmp_path / "p", "--devices", "cpu"), "--shape")
    assert ragc("compile", path, "-o", tmp_path / "p", "--devices", "cpu", "--shape", "x=4x3x16x16").returncode == 0


def test_bad_devices(model, tmp_path):
    assert_one_line_error(ragc("compile", model, "-o", tmp_path / "p", "--devices", "tpu"), "bad --devices")


def test_unknown_cut(model, tmp_path):
    assert_one_line_error(
        ragc("compile", model, "-o", tmp_path / "p", "--devices", "cpu", "--cut", "nope"), "--cut names nope"
    )


def test_tampered_bundle(plan, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(plan, copy)
    (copy / "schedule.json").write_text((copy / "schedule.json").read_text().replace("cpu", "cpu "))
    assert_one_line_error(ragc("run", copy), "sha256")


def test_wrong_input_shape(plan, tmp_path):
    np.save(tmp_path / "x.npy", np.ones((2, 3, 16, 16), np.float32))
    assert_one_line_error(ragc("run", plan, "--input", f"x={tmp_path / 'x.npy'}"), "expects [1, 3, 16, 16]")


def test_unreadable_input_file(plan, tmp_path):
    assert_one_line_error(ragc("run", plan, "--input", f"x={tmp_path / 'none.npy'}"), "cannot read --input x")


def test_llm_compile_simulate_and_generate(tmp_path):
    """`compile --llm`, `simulate` and `run --generate` on a tiny decoder: one bundle, each phase's figures."""
    import onnx

    from bench.llm_tiny import TinyConfig, tiny_decoder

    onnx.save(tiny_decoder(TinyConfig()), tmp_path / "decoder.onnx")
    out = tmp_path / "plan"
    llm = ("--llm", "--max-context", 24, "--prefill", 8, "--devices", "cpu", "--target", "ryzen-ai-9-hx-370")
    result = ragc("compile", tmp_path / "decoder.onnx", "-o", out, *llm)
    assert result.returncode == 0, result.stderr
    assert "schedule.prefill.json" in result.stdout and "time to first token" in result.stdout
    assert "time to first token" in ragc("simulate", out).stdout
    assert "LLM bundle" in ragc("inspect", out).stdout
    assert set(json.loads(ragc("inspect", out, "--json").stdout)["llm"]) >= {"prefill", "decode", "ttft_ms"}
    for bad in ("{not json", '{"version": 2, "prefill_schedule": "../schedule.json"}'):  # hostile llm.json
        (out / "llm.json").write_text(bad)
        for command in ("inspect", "simulate"):
            assert_one_line_error(ragc(command, out), "llm.json")
    ragc("compile", tmp_path / "decoder.onnx", "-o", out, *llm)
    (tmp_path / "prompt.txt").write_text("1 2 3")
    result = ragc("run", out, "--generate", 4, "--prompt-ids", tmp_path / "prompt.txt")
    assert result.returncode == 0, result.stderr
    assert "tokens/s" in result.stdout
