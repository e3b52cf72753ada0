"""The cost model knows each precision: a GPU kernel in fp16/bf16 moves half the bytes, and GEMM/conv tiles in
fp16 arithmetic or on cooperative matrices compute faster (the personality's measured speedup, else a stated
default); `--precision` placements predict so, and the bundle and `ragc explain` record each op's precision."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_costmodel import conv_relu_graph

from codegen.gpu.precision import Precision, choose
from ragc.cli import main
from ragc.costmodel import CostModel
from ragc.costmodel.precision import DEFAULT_SPEEDUP, gemm_speedup
from ragc.ir import Graph, Op, Tensor
from ragc.personality.store import Personality
from ragc.pipeline import compile_model
from ragc.targets import load_target

TINYNET = Path(__file__).resolve().parent.parent / "examples" / "tinynet.onnx"
TARGET = "ryzen-ai-9-hx-370"
FP16_TILES = Precision("fp16", "float16", "float16")
COOPMAT = Precision("mixed", "float16", "float32", coopmat=True)


@pytest.fixture(scope="module")
def personality():
    return Personality(load_target(TARGET))  # the roofline prices its GPU (a target has no samples)


def _matmul() -> Graph:
    """A 1024^3 MatMul: compute-bound on the target's GPU roofline."""
    w = np.zeros((1024, 1024), np.float32)
    tensors = {n: Tensor(n, (1024, 1024), "float32", w if n == "w" else None) for n in ("x", "w", "y")}
    return Graph([Op("mm", "MatMul", ["x", "w"], ["y"])], tensors, ["x"], ["y"])


def _gpu_ms(personality, precision, graph=None, op="mm"):
    return CostModel(personality, gpu_precision=precision).graph_ms(graph or _matmul(), "gpu")[op]


def test_reduced_precision_predicts_faster_in_the_right_order(personality):
    conv = conv_relu_graph()  # memory-bound: halved bytes show
    assert _gpu_ms(personality, choose("bf16"), conv, "conv") < _gpu_ms(personality, None, conv, "conv")
    assert _gpu_ms(personality, Precision()) == _gpu_ms(personality, None)
    fp32, bf16 = _gpu_ms(personality, None), _gpu_ms(personality, choose("bf16"))
    fp16, coop = _gpu_ms(personality, FP16_TILES), _gpu_ms(personality, COOPMAT)
    assert fp32 >= bf16 > fp16 > coop  # compute-bound: storage alone gains nothing, faster tiles do
    cpu = [CostModel(personality, gpu_precision=p).graph_ms(conv, "cpu") for p in (None, COOPMAT)]
    assert cpu[0] == cpu[1]  # only GPU kernels change


def test_speedup_is_the_personalitys_where_measured_else_the_default():
    assert gemm_speedup({}, COOPMAT) == DEFAULT_SPEEDUP["coopmat"]
    assert gemm_speedup({"gemm_speedup": {"coopmat": 12.5}}, COOPMAT) == 12.5
    assert gemm_speedup({"gemm_speedup": {"coopmat": 12.5}}, choose("mixed")) == 1.0  # fp32 tiles


def test_measured_speedup_changes_the_prediction(personality):
    faster = copy.deepcopy(personality)
    faster.data["devices"]["gpu"]["gemm_speedup"] = {"coopmat": 50.0}
    assert _gpu_ms(faster, COOPMAT) < _gpu_ms(personality, COOPMAT)


def test_fp16_plan_predicts_less_and_the_bundle_and_explain_record_precision(tmp_path):
    docs = {}
    for name in ("fp32", "fp16"):
        compile_model(TINYNET, tmp_path / name, target=TARGET, devices="cpu,gpu", place=["*=gpu"], precision=name)
        docs[name] = json.loads((tmp_path / name / "costs.json").read_text())
    assert docs["fp16"]["precision"] == "fp16" and docs["fp32"]["precision"] == "fp32"
    assert docs["fp16"]["placement_ms"] < docs["fp32"]["placement_ms"]
    gpu_ms = {name: sum(op["ms"]["gpu"] for op in doc["ops"]) for name, doc in docs.items()}
    assert gpu_ms["fp16"] < gpu_ms["fp32"]
    assert {op["precision"] for op in docs["fp16"]["ops"]} == {"fp16"}
    result = CliRunner().invoke(main, ["explain", str(tmp_path / "fp16"), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["ops"]
    assert rows and all(row["precision"] == "fp16" for row in rows)
    text = CliRunner().invoke(main, ["explain", str(tmp_path / "fp16")]).output
    assert "precision" in text and "fp16" in text
