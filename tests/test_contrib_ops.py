"""onnxruntime's com.microsoft ops (ragc/frontend/contrib.py, contrib_attention.py): each in a graph built with
onnx.helper, lowered to standard ops by the front end, compiled GPU-first with zero CPU partitions, run under
runtime_min on Vulkan, and compared with onnxruntime running the original contrib graph natively (rtol 1e-4,
atol 1e-5; 1e-4 for the attention family). The lowered model, run by onnxruntime, must match too: it is what CPU
partitions run."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from gpu_plans import check_gpu_first, ort_outputs
from onnx import TensorProto, helper, numpy_helper

from ragc.errors import ModelError
from ragc.frontend import load_model

B, S, HID, HEADS = 2, 7, 32, 4
MS = "com.microsoft"


def _model(nodes, inputs, outputs, weights: dict[str, np.ndarray], opset: int) -> onnx.ModelProto:
    def info(name, shape, dtype=TensorProto.FLOAT):
        return helper.make_tensor_value_info(name, dtype, shape)

    graph = helper.make_graph(
        nodes,
        "contrib",
        [info(*i) for i in inputs],
        [info(name, shape) for name, shape in outputs],
        [numpy_helper.from_array(w, n) for n, w in weights.items()],
    )
    opsets = [helper.make_opsetid("", opset), helper.make_opsetid(MS, 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=9)


def _weights(**shapes) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(len(shapes))
    return {n: (rng.standard_normal(s) * (0.3 if len(s) > 1 else 1.0)).astype(np.float32) for n, s in shapes.items()}


def _feeds(model: onnx.ModelProto, seed: int = 0, **special) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for vi in model.graph.input:
        shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        feeds[vi.name] = special.get(vi.name, rng.standard_normal(shape).astype(np.float32))
    return feeds


def _check(model: onnx.ModelProto, tmp_path, feeds, atol: float = 1e-5) -> None:
    path = tmp_path / "contrib.onnx"
    onnx.save(model, str(path))
    lowered = load_model(path, {n: x.shape for n, x in feeds.items()})
    assert all(node.domain in ("", "ai.onnx") for node in lowered.proto.graph.node)
    for got, want in zip(ort_outputs(lowered.proto, feeds), ort_outputs(model, feeds), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=atol)  # the CPU path stays valid
    check_gpu_first(path, tmp_path / "plan", feeds, atol=atol)


X = ("x", [B, S, HID])


@pytest.mark.parametrize("opset", [17, 23])
def test_skip_layer_normalizations(tmp_path, opset):
    w = _weights(gamma=(HID,), beta=(HID,), bias=(HID,))
    nodes = [
        helper.make_node(
            "SkipLayerNormalization",
            ["x", "skip", "gamma", "beta", "bias"],
            ["y", "", "", "sum"],
            domain=MS,
            epsilon=1e-5,
        ),
        helper.make_node(
            "SkipSimplifiedLayerNormalization", ["y", "sum", "gamma", "bias"], ["z"], domain=MS, epsilon=1e-6
        ),
        helper.make_node(
            "SimplifiedLayerNormalization", ["z", "gamma"], ["r"], epsilon=1e-6, axis=-1
        ),  # default domain
    ]
    model = _model(nodes, [X, ("skip", [B, S, HID])], [("r", [B, S, HID]), ("sum", [B, S, HID])], w, opset)
    _check(model, tmp_path, _feeds(model))


@pytest.mark.parametrize("opset", [17, 20])
def test_gelus(tmp_path, opset):
    w = _weights(bias=(HID,))
    nodes = [
        helper.make_node("FastGelu", ["x", "bias"], ["f"], domain=MS),
        helper.make_node("BiasGelu", ["f", "bias"], ["g"], domain=MS),
        helper.make_node("Gelu", ["g"], ["h"], domain=MS),
        helper.make_node("QuickGelu", ["h"], ["y"], domain=MS, alpha=1.5),
    ]
    model = _model(nodes, [X], [("y", [B, S, HID])], w, opset)
    _check(model, tmp_path, _feeds(model))


def _mask(lengths: list[int], length: int = S) -> np.ndarray:
    return (np.arange(length)[None, :] < np.array(lengths)[:, None]).astype(np.int32)


@pytest.mark.parametrize(("mask", "unidirectional"), [("2d", 0), ("lengths", 0), ("none", 1), ("2d", 1)])
def test_attention(tmp_path, mask, unidirectional):
    w = _weights(weights=(HID, 3 * HID), bias=(3 * HID,))
    inputs = [X]
    ins = ["x", "weights", "bias"]
    special = {}
    if mask == "2d":
        inputs.append(("mask", [B, S], TensorProto.INT32))
        ins.append("mask")
        special["mask"] = _mask([S, 4])
    elif mask == "lengths":
        inputs.append(("mask", [B], TensorProto.INT32))
        ins.append("mask")
        special["mask"] = np.array([S, 5], np.int32)
    node = helper.make_node("Attention", ins, ["y"], domain=MS, num_heads=HEADS, unidirectional=unidirectional)
    model = _model([node], inputs, [("y", [B, S, HID])], w, 17)
    _check(model, tmp_path, _feeds(model, **special), atol=1e-4)


@pytest.mark.parametrize("cross", [False, True])
def test_multi_head_attention(tmp_path, cross):
    kv_len = 5 if cross else S
    w = _weights(bias=(3 * HID,), attn_bias=(1, HEADS, S, kv_len))
    ins = ["x", "k", "v", "bias", "pad", "attn_bias"]
    inputs = [X, ("k", [B, kv_len, HID]), ("v", [B, kv_len, HID]), ("pad", [B, kv_len], TensorProto.INT32)]
    node = helper.make_node("MultiHeadAttention", ins, ["y"], domain=MS, num_heads=HEADS)
    model = _model([node], inputs, [("y", [B, S, HID])], w, 17)
    _check(model, tmp_path, _feeds(model, pad=_mask([kv_len, 3], kv_len)), atol=1e-4)


@pytest.mark.parametrize("do_rotary", [0, 1])
def test_group_query_attention(tmp_path, do_rotary):
    """Hidden 64 here: onnxruntime's GroupQueryAttention wants a head size that is a multiple of 16."""
    hid = 64
    kv_heads, head = 2, hid // HEADS
    angles = np.random.default_rng(3).uniform(-3, 3, (16, head // 2))
    w = {"cos": np.cos(angles).astype(np.float32), "sin": np.sin(angles).astype(np.float32)}
    w["seqlens"] = np.full(B, S - 1, np.int32)
    w["total"] = np.array(S, np.int32)
    ins = ["x", "k", "v", "", "", "seqlens", "total"] + (["cos", "sin"] if do_rotary else [])
    inputs = [("x", [B, S, hid]), ("k", [B, S, kv_heads * head]), ("v", [B, S, kv_heads * head])]
    node = helper.make_node(
        "GroupQueryAttention",
        ins,
        ["y", "present_k", "present_v"],
        domain=MS,
        num_heads=HEADS,
        kv_num_heads=kv_heads,
        do_rotary=do_rotary,
    )
    present = [B, kv_heads, S, head]
    model = _model([node], inputs, [("y", [B, S, hid]), ("present_k", present), ("present_v", present)], w, 17)
    _check(model, tmp_path, _feeds(model), atol=1e-4)


@pytest.mark.parametrize("interleaved", [0, 1])
def test_rotary_embedding(tmp_path, interleaved):
    head = HID // HEADS
    angles = np.random.default_rng(4).uniform(-3, 3, (16, head // 2))
    w = {"cos": np.cos(angles).astype(np.float32), "sin": np.sin(angles).astype(np.float32)}
    inputs = [X, ("pos", [B, S], TensorProto.INT64)]
    node = helper.make_node(
        "RotaryEmbedding", ["x", "pos", "cos", "sin"], ["y"], domain=MS, num_heads=HEADS, interleaved=interleaved
    )
    model = _model([node], inputs, [("y", [B, S, HID])], w, 17)
    pos = np.random.default_rng(5).integers(0, 16, (B, S))
    _check(model, tmp_path, _feeds(model, pos=pos))


def test_unsupported_variant_is_one_line(tmp_path):
    w = _weights(weights=(HID, 3 * HID))
    node = helper.make_node("Attention", ["x", "weights"], ["y"], domain=MS, num_heads=HEADS, do_rotary=1)
    path = tmp_path / "m.onnx"
    onnx.save(_model([node], [X], [("y", [B, S, HID])], w, 17), str(path))
    with pytest.raises(ModelError, match="Attention node .*do_rotary is not supported") as err:
        load_model(path)
    assert "\n" not in str(err.value)
