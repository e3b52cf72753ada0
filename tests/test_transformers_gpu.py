"""Exported transformers on the GPU: 2-layer BERT, GPT-2 and Llama-style (grouped-query) models with random
weights (tests/models/, written by export_transformers.py with the TorchScript-based exporter at opset 17 and the
dynamo exporter at opsets 18 and 23, batch and sequence dynamic) compiled GPU-first at sequence 24 with zero CPU
partitions, run under runtime_min on Vulkan, against onnxruntime on the original model (fp32, rtol 1e-4, atol
1e-5). Plus the masked-softmax guard Where(IsNaN(p), 0, p) exactly as the exporters write it, with fully masked
rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from gpu_plans import check_gpu_first, run_gpu_first
from onnx import TensorProto, helper, numpy_helper

MODELS = Path(__file__).resolve().parent / "models"
EXPORTS = sorted(p.stem for p in MODELS.glob("*.onnx"))
SEQ, VOCAB = 24, 96


def _feeds(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = (rng.random((1, SEQ)) < 0.8).astype(np.int64)
    mask[0, :2] = 1  # every query row keeps a key (a causal model's first row sees only the first key)
    return {"input_ids": rng.integers(0, VOCAB, (1, SEQ)).astype(np.int64), "attention_mask": mask}


@pytest.mark.parametrize("name", EXPORTS)
def test_export_runs_gpu_first(tmp_path, name):
    check_gpu_first(MODELS / f"{name}.onnx", tmp_path / "plan", _feeds(len(name)))


def _guard_model(seq: int, heads: int, head: int) -> onnx.ModelProto:
    """q, k, v (1, heads, seq, head) and a bool mask (1, 1, seq, seq): scores scaled on both sides, the mask as
    Where(mask, 0, -inf), Softmax, the IsNaN guard, the product with v."""
    scale = numpy_helper.from_array(np.array(head**-0.25, np.float32), "scale")
    zero = numpy_helper.from_array(np.array(0.0, np.float32), "zero")
    neg_inf = numpy_helper.from_array(np.array(-np.inf, np.float32), "neg_inf")
    nodes = [
        helper.make_node("Mul", ["q", "scale"], ["qs"]),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
        helper.make_node("Mul", ["kt", "scale"], ["ks"]),
        helper.make_node("MatMul", ["qs", "ks"], ["scores"]),
        helper.make_node("Where", ["mask", "zero", "neg_inf"], ["bias"]),
        helper.make_node("Add", ["scores", "bias"], ["masked"]),
        helper.make_node("Softmax", ["masked"], ["p"], axis=-1),
        helper.make_node("IsNaN", ["p"], ["nan"]),
        helper.make_node("Where", ["nan", "zero", "p"], ["guarded"]),
        helper.make_node("MatMul", ["guarded", "v"], ["y"]),
    ]
    qkv = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, heads, seq, head]) for n in "qkv"]
    mask = helper.make_tensor_value_info("mask", TensorProto.BOOL, [1, 1, seq, seq])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, heads, seq, head])
    graph = helper.make_graph(nodes, "guard", [*qkv, mask], [out], [scale, zero, neg_inf])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def test_masked_softmax_guard_with_fully_masked_rows(tmp_path):
    path = tmp_path / "guard.onnx"
    onnx.save(_guard_model(12, 4, 16), str(path))
    rng = np.random.default_rng(7)
    feeds = {n: rng.standard_normal((1, 4, 12, 16)).astype(np.float32) for n in "qkv"}
    feeds["mask"] = rng.random((1, 1, 12, 12)) < 0.7
    feeds["mask"][0, 0, [3, 8]] = False  # rows that attend to nothing: NaN softmax, zeroed by the guard
    check_gpu_first(path, tmp_path / "plan", feeds)
    got, _ = run_gpu_first(path, tmp_path / "plan2", feeds)
    assert np.all(got[0][0, :, [3, 8]] == 0)
