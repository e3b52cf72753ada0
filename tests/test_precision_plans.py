"""`ragc compile --precision`: GPU partitions checked against fp32 at compile time (emulated for a --target, on the
Vulkan device for this chip), kept or compiled in fp32 with a note; `inspect --json` shows each one's precision."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import helper, numpy_helper

import ragc.precision
import runtime_min
from ragc.cli import main
from ragc.cli.report import plan_summary
from ragc.pipeline import compile_model
from ragc.precision import TOLERANCE, error

TINYNET = Path(__file__).resolve().parent.parent / "examples" / "tinynet.onnx"
TARGET = "ryzen-ai-9-hx-370"


def _compile(model: Path, out: Path, precision: str) -> dict:
    compile_model(model, out, target=TARGET, devices="cpu,gpu", place=["*=gpu"], precision=precision)
    return plan_summary(out)


def _run_against_onnxruntime(model: Path, plan_dir: Path) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", runtime_min.RuntimeMinWarning)
        plan = runtime_min.load(plan_dir)
    feeds = {i.name: np.random.default_rng(3).random(i.shape).astype(i.dtype) for i in plan.inputs}
    got = plan.run(feeds)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    want = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))
    assert all(got[k].dtype == want[k].dtype for k in want)  # the plan keeps the model's dtypes
    return error(got, want)


@pytest.mark.parametrize("precision", ["mixed", "bf16"])
def test_cross_compiled_plan_is_checked_by_emulation_and_runs_here(tmp_path, precision):
    summary = _compile(TINYNET, tmp_path / "plan", precision)
    gpu = [p for p in summary["partitions"] if p["device"] == "gpu"]
    assert gpu and all(p["precision"] == precision for p in gpu)
    assert all("emulated" in p["precision_check"] and p["precision_error"] <= TOLERANCE[precision] for p in gpu)
    assert _run_against_onnxruntime(TINYNET, tmp_path / "plan") <= TOLERANCE[precision]


def test_same_model_and_personality_give_byte_identical_bundles(tmp_path):
    for name in ("a", "b"):
        _compile(TINYNET, tmp_path / name, "fp16")
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)


def _overflowing_model(path: Path) -> Path:
    """Two 3x3 convolutions whose activations pass 65504 (fp16's largest) on inputs scaled to 0..255."""
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array((rng.random((8, c, 3, 3)) * 40).astype(np.float32), f"w{i}")
        for i, c in ((0, 3), (1, 8))
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["h"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Conv", ["r", "w1"], ["y"], pads=[1, 1, 1, 1]),
        helper.make_node("ReduceMean", ["y"], ["out"], keepdims=0),
    ]
    info = helper.make_tensor_value_info
    graph = helper.make_graph(
        nodes, "big", [info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])], [info("out", onnx.TensorProto.FLOAT, [])],
        weights,
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


def test_a_partition_that_fails_its_check_is_compiled_in_fp32_with_a_note(tmp_path):
    model = _overflowing_model(tmp_path / "big.onnx")
    fp16 = [p for p in _compile(model, tmp_path / "fp16", "fp16")["partitions"] if p["device"] == "gpu"]
    assert fp16[0]["precision"] == "fp32" and "fp16 failed its check" in fp16[0]["precision_note"]
    assert _run_against_onnxruntime(model, tmp_path / "fp16") <= 1e-4
    bf16 = [p for p in _compile(model, tmp_path / "bf16", "bf16")["partitions"] if p["device"] == "gpu"]
    assert bf16[0]["precision"] == "bf16"  # bf16 has float32's range


def test_on_this_chip_the_check_runs_on_the_vulkan_device(tmp_path, monkeypatch):
    from gpu_harness import backend

    monkeypatch.setattr(ragc.precision, "_vulkan_here", lambda personality: backend())
    summary = _compile(TINYNET, tmp_path / "plan", "mixed")
    gpu = [p for p in summary["partitions"] if p["device"] == "gpu"]
    assert gpu[0]["precision_check"].startswith("ran on ") and gpu[0]["precision"] == "mixed"


def test_cli_precision_and_inspect_json(tmp_path):
    runner = CliRunner()
    out = tmp_path / "plan"
    args = ["compile", str(TINYNET), "-o", str(out), "--target", TARGET, "--precision", "mixed", "--place", "*=gpu"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(runner.invoke(main, ["inspect", str(out), "--json"]).output)
    assert {p["precision"] for p in summary["partitions"]} == {"mixed"}
    bad = runner.invoke(main, ["compile", str(TINYNET), "-o", str(out), "--precision", "fp8"])
    assert bad.exit_code != 0 and "fp8" in bad.output
