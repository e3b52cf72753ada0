"""Operator features, the roofline, the learned per-device model, cost_fn and the leave-one-model-out evaluation."""

from __future__ import annotations

import copy
import json
import math
import warnings

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from personality_fixtures import measured_personality

from ragc.cli import main
from ragc.costmodel import CostModel, cost_fn
from ragc.costmodel.features import FAMILIES, epilogue_ops, op_family, op_features
from ragc.costmodel.roofline import roofline_ms
from ragc.errors import PersonalityError
from ragc.ir import Graph, Op, Tensor
from ragc.personality.store import Personality, save_personality, store_path
from ragc.profiler.evaluate import fold_personality, leave_one_model_out, measure_models
from ragc.profiler.model_timing import ModelTiming
from ragc.profiler.specs import bench_graph, conv, gemm, matmul, unary
from ragc.profiler.steady import Gate
from ragc.profiler.zoo import generated_models, model_set


@pytest.fixture(scope="module")
def personality():
    return measured_personality()


def conv_relu_graph() -> Graph:
    w = np.zeros((8, 4, 3, 3), np.float32)
    tensors = {
        "x": Tensor("x", (1, 4, 16, 16), "float32"),
        "w": Tensor("w", w.shape, "float32", w),
        "y": Tensor("y", (1, 8, 16, 16), "float32"),
        "r": Tensor("r", (1, 8, 16, 16), "float32"),
        "s": Tensor("s", (2,), "int64", np.array([1, -1])),
        "f": Tensor("f", (1, 2048), "float32"),
    }
    ops = [
        Op("conv", "Conv", ["x", "w"], ["y"], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
        Op("relu", "Relu", ["y"], ["r"]),
        Op("flat", "Reshape", ["r", "s"], ["f"]),
    ]
    return Graph(ops, tensors, ["x"], ["f"])


def test_op_family_table():
    assert [
        op_family(t)
        for t in (
            "Conv",
            "MatMul",
            "Relu",
            "MaxPool",
            "Softmax",
            "LayerNormalization",
            "ReduceMean",
            "Transpose",
            "Reshape",
            "SomeCustomOp",
        )
    ] == ["conv", "gemm", "elementwise", "pool", "softmax", "norm", "reduce", "movement", "metadata", "elementwise"]


def test_conv_features():
    g = conv(32, 28, 64, 3, stride=2)
    f = op_features(g, g.ops[0])
    assert f["fam_conv"] == 1.0 and sum(f[f"fam_{x}"] for x in FAMILIES) == 1.0
    assert (f["N"], f["C"], f["H"], f["W"], f["K"], f["kh"], f["kw"], f["stride"], f["groups"]) == (
        1,
        32,
        28,
        28,
        64,
        3,
        3,
        2,
        1,
    )
    assert f["flops"] == 2 * 64 * 14 * 14 * 32 * 9
    assert f["weight_bytes"] == (64 * 32 * 9 + 64) * 4
    assert f["bytes_in"] == (32 * 28 * 28 + 64 * 32 * 9 + 64) * 4 and f["bytes_out"] == 64 * 14 * 14 * 4
    assert f["intensity"] == pytest.approx(f["flops"] / (f["bytes_in"] + f["bytes_out"]))
    dw = conv(32, 28, 32, 3, group=32)
    fd = op_features(dw, dw.ops[0])
    assert fd["fam_conv_dw"] == 1.0 and fd["groups"] == 32 and fd["flops"] == 2 * 32 * 28 * 28 * 9


def test_gemm_and_matmul_features():
    g = gemm(8, 64, 32)
    f = op_features(g, g.ops[0])
    assert (f["gemm_m"], f["gemm_k"], f["gemm_n"], f["flops"]) == (8, 64, 32, 2 * 8 * 64 * 32)
    m = matmul((4, 16, 8), (4, 8, 12), b_const=False)
    f = op_features(m, m.ops[0])
    assert (f["batch"], f["gemm_m"], f["gemm_k"], f["gemm_n"]) == (4, 16, 8, 12)


def test_gather_reads_rows_not_the_table():
    g = bench_graph("Gather", [((1000, 64), True), np.arange(4, dtype=np.int64)], {"axis": 0})
    f = op_features(g, g.ops[0])
    assert f["weight_bytes"] == 1000 * 64 * 4 + 4 * 8 and f["bytes_in"] == 4 * 64 * 4 + 4 * 8


def test_epilogues_and_metadata_in_context(personality):
    g = conv_relu_graph()
    assert epilogue_ops(g) == {"relu"}
    cost = cost_fn(personality)
    assert cost(g, g.op("conv"), "cpu") > cost(g, g.op("relu"), "cpu")
    assert cost(g, g.op("relu"), "cpu") == 0.0  # runs inside the conv's kernel
    assert cost(g, g.op("flat"), "cpu") == 0.0


def test_learned_model_is_deterministic_and_scales(personality):
    a, b = CostModel(personality), CostModel(personality)
    graphs = [conv(16, 14, 16, 3), conv(64, 56, 64, 3), conv(256, 56, 256, 3), unary("Relu", 4_000_000)]
    feats = [op_features(g, g.ops[0]) for g in graphs]
    pa = a.predict("cpu", feats)
    assert pa == b.predict("cpu", feats)
    assert all(math.isfinite(p) and p > 0 for p in pa)
    assert pa[0] < pa[1] < pa[2]  # beyond the sampled shapes, time still grows with the work (roofline ratio)


def test_device_without_samples_uses_the_roofline_with_a_warning(personality):
    p = copy.deepcopy(personality)
    p.data["devices"]["gpu"] = {
        "name": "g",
        "peak_gflops": 1000.0,
        "peak_gbps": 100.0,
        "dispatch_ms": 0.1,
        "op_overhead_ms": 0.01,
        "memory_bytes": 2**30,
    }
    with pytest.warns(UserWarning, match="gpu of .* has 0 measured samples"):
        model = CostModel(p)
    g = conv(64, 56, 64, 3)
    f = op_features(g, g.ops[0])
    assert model.predict("gpu", [f]) == [roofline_ms(f, p.device("gpu"))]


def test_targets_predict_without_warnings():
    from ragc.personality.store import load_personality

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cost = cost_fn(load_personality("ryzen-7-7840u"))
    g = conv(64, 56, 64, 3)
    assert cost(g, g.ops[0], "npu") > 0


def test_generated_models_are_valid_onnx():
    import onnx

    for model in generated_models().values():
        onnx.checker.check_model(model, full_check=True)
        assert model.graph.name


@pytest.fixture(scope="module")
def small_eval(personality):
    graphs = model_set(["cnn_plain_96", "cnn_dw_224", "vit_s197_d384"])
    timings, steadiness = measure_models(graphs, personality, 0.05, gate=Gate(extra_s=0.0))
    assert steadiness.blocks >= steadiness.counted and steadiness.reference
    return leave_one_model_out(personality, timings)


def test_leave_one_model_out_report(small_eval):
    assert [r["model"] for r in small_eval["models"]] == ["cnn_plain_96", "cnn_dw_224", "vit_s197_d384"]
    for r in small_eval["models"]:
        assert r["measured_ms"] > 0 and r["predicted_ms"] > 0 and math.isfinite(r["error_pct"])
        assert 0 <= r["op_within_10_pct"] <= 100 and math.isfinite(r["alone_error_pct"])
    assert small_eval["ops"]["count"] > 30
    assert small_eval["alone_within_15"] == sum(abs(r["alone_error_pct"]) <= 15 for r in small_eval["models"])
    json.dumps(small_eval)


def test_unknown_eval_model():
    with pytest.raises(PersonalityError, match="unknown eval model"):
        model_set(["nope"])


def test_cli_eval_json(personality, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    save_personality(personality, store_path(personality.chip_id))
    result = CliRunner().invoke(
        main,
        ["costmodel", "eval", "--models", "cnn_plain_96,cnn_dw_224", "--devices", "cpu", "--json", "--budget", "0.05"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [r["model"] for r in report["cpu"]["models"]] == ["cnn_plain_96", "cnn_dw_224"]
    assert report["cpu"]["steadiness"]["blocks"] >= 2 * 5  # ROUNDS blocks per model at least


def test_cli_eval_saved_timings_give_the_same_report(personality, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    save_personality(personality, store_path(personality.chip_id))
    saved = tmp_path / "timings.json"
    runner = CliRunner()
    args = ["eval", "--devices", "cpu", "--json"]
    first = runner.invoke(
        main,
        ["costmodel", *args, "--models", "cnn_plain_96,cnn_dw_224", "--budget", "0.05", "--save-timings", str(saved)],
    )
    assert first.exit_code == 0, first.output
    again = runner.invoke(main, ["costmodel", *args, "--timings", str(saved)])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout) == json.loads(first.stdout)
    data = json.loads(saved.read_text())
    saved.write_text(json.dumps(data | {"chip_id": "another-chip"}))
    refused = runner.invoke(main, ["costmodel", *args, "--timings", str(saved)])
    assert refused.exit_code != 0 and "measured on chip another-chip" in refused.output
    other = tmp_path / "other-chip.json"
    other.write_text(json.dumps(personality.data | {"chip_id": "another-chip"}))
    elsewhere = runner.invoke(main, ["costmodel", *args, "--timings", str(saved), "--target", str(other)])
    assert elsewhere.exit_code == 0, elsewhere.output
    assert json.loads(elsewhere.stdout)["cpu"]["models"] == json.loads(first.stdout)["cpu"]["models"]
    unmeasured = runner.invoke(main, ["costmodel", *args, "--target", str(other)])
    assert unmeasured.exit_code != 0 and "--target goes with --timings" in unmeasured.output


def exporter_named_model(path) -> None:
    """A conv + relu + conv model whose node names are torch exporters' ("/layer1/conv1/Conv")."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((8, 8, 3, 3)).astype(np.float32), f"w{i}") for i in (1, 2)]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], "/layer1/conv1/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["b"], "/layer1/relu/Relu"),
        helper.make_node("Conv", ["b", "w2"], ["y"], "/layer1/conv2/Conv", pads=[1, 1, 1, 1]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 32, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 32, 32])
    graph = helper.make_graph(nodes, "exported", [x], [y], weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_cli_eval_of_a_model_file_times_its_ops_and_rereads_its_timings(personality, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    save_personality(personality, store_path(personality.chip_id))
    model, saved = tmp_path / "exported.onnx", tmp_path / "timings.json"
    exporter_named_model(model)
    runner = CliRunner()
    args = ["costmodel", "eval", "--devices", "cpu", "--json"]
    first = runner.invoke(
        main, [*args, "--models", f"{model},cnn_plain_96", "--budget", "0.05", "--save-timings", str(saved)]
    )
    assert first.exit_code == 0, first.output
    rows = json.loads(first.stdout)["cpu"]["models"]
    assert [r["model"] for r in rows] == ["exported", "cnn_plain_96"]
    timed = json.loads(saved.read_text())["devices"]["cpu"]["timings"][0]
    assert {s["op"] for s in timed["samples"]} == {"/layer1/conv1/Conv", "/layer1/conv2/Conv"}  # relu fused
    again = runner.invoke(main, [*args, "--timings", str(saved)])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout) == json.loads(first.stdout)


def test_folds_refit_the_gpu_launch_with_the_other_models_runs(personality):
    graph = conv_relu_graph()
    truth = (0.2, 0.005, 1.05)  # dispatch, per kernel, kernel scale
    gbps = 10.0
    copy_ms = sum(graph.tensors[n].nbytes for n in (*graph.inputs, *graph.outputs)) / (gbps * 1e6)

    def wall(kernels: int, kernel_ms: float) -> float:
        return truth[0] + kernels * truth[1] + truth[2] * kernel_ms

    gpu = {"name": "gpu", "dispatch_ms": 1.0, "op_overhead_ms": 0.0, "kernel_scale": 0.8, "samples": []}
    gpu["launch_runs"] = [[n, k, wall(n, k)] for n, k in [(1, 0.01), (32, 0.3), (8, 2.0)]]
    data = copy.deepcopy(personality.data)
    data["devices"]["gpu"] = gpu
    data["transfers"] = {"cpu->gpu": {"latency_ms": 0.0, "gbps": gbps}}
    stale = Personality(data)
    others = [
        ModelTiming(f"m{n}", graph, [{"ms": k / n}] * n, wall(n, k) + copy_ms, 0.0) for n, k in [(40, 3.0), (12, 0.5)]
    ]
    fold = fold_personality(stale, "gpu", others)
    entry = fold.device("gpu")
    got = (entry["dispatch_ms"], entry["op_overhead_ms"], entry["kernel_scale"])
    assert got == pytest.approx(truth, rel=1e-3)
    assert stale.device("gpu")["kernel_scale"] == 0.8  # the personality itself is left as it was
    assert fold_personality(stale, "cpu", others) is stale


def test_broadcast_and_alignment_features():
    per_channel = bench_graph("Mul", [((1, 64, 49), False), ((64, 1), True)])
    f = op_features(per_channel, per_channel.ops[0])
    assert (f["bcast_ratio"], f["bcast_inner"]) == (49.0, 49.0)
    same = bench_graph("Add", [((1, 32), False), ((1, 32), False)])
    assert op_features(same, same.ops[0])["bcast_ratio"] == 1.0
    assert op_features(conv(32, 8, 32, 1), conv(32, 8, 32, 1).ops[0])["aligned16"] == 1.0
    odd = conv(136, 8, 136, 1, group=4)
    assert op_features(odd, odd.ops[0])["aligned16"] == 0.0


def test_epilogue_chains():
    g = conv_relu_graph()
    scale = Tensor("k", (1, 8, 1, 1), "float32", np.ones((1, 8, 1, 1), np.float32))
    g.tensors |= {"k": scale, "m": Tensor("m", (1, 8, 16, 16), "float32")}
    g.ops.insert(2, Op("scale", "Mul", ["r", "k"], ["m"]))
    g.ops[3].inputs[0] = "m"
    assert epilogue_ops(g) == {"relu", "scale"}


def test_gpu_absorbs_elementwise_trees_cpu_only_epilogues(tmp_path):
    import onnx

    from ragc.costmodel import absorbed_ops
    from ragc.frontend import load_model
    from ragc.profiler.modelgen import transformer

    onnx.save(transformer(16, 32, 2, 1), tmp_path / "t.onnx")
    graph = load_model(tmp_path / "t.onnx").graph
    gelu = {op.name for op in graph.ops if op.op_type == "Erf"}
    assert gelu <= absorbed_ops(graph, "gpu")  # the erf-GELU tree is one GPU kernel ...
    assert not gelu & absorbed_ops(graph, "cpu")  # ... but separate onnxruntime kernels
    attention = {op.name for op in graph.ops if op.op_type in ("Softmax", "Transpose")}
    assert attention <= absorbed_ops(graph, "gpu")  # inside the fused attention dispatch, named after P.V's MatMul
    assert attention.isdisjoint(absorbed_ops(graph, "cpu"))


def test_kernel_family_of_fused_ops():
    from ragc.costmodel.kernel_merge import kernel_family

    assert kernel_family("gemm", ["gemm", "elementwise", "softmax", "gemm"]) == "attention"
    assert kernel_family("elementwise", ["elementwise", "reduce", "elementwise"]) == "norm"
    assert kernel_family("gemm", ["gemm", "elementwise", "reduce"]) == "gemm"  # an epilogue keeps its anchor's


def test_gpu_kernel_features_price_a_fused_kernel_as_a_whole(tmp_path):
    from ragc.costmodel import kernel_features
    from ragc.costmodel.features import family_of_features
    from ragc.costmodel.gpu_fusion import gpu_kernel_of
    from ragc.frontend import load_model
    from ragc.profiler.modelgen import transformer

    onnx.save(transformer(16, 32, 2, 1), tmp_path / "t.onnx")
    graph = load_model(tmp_path / "t.onnx").graph
    kernel_of, kernels = gpu_kernel_of(graph), kernel_features(graph, "gpu")
    softmax = next(op for op in graph.ops if op.op_type == "Softmax")
    attention = kernel_of[softmax.name]
    members = [op for op in graph.ops if kernel_of[op.name] == attention]
    assert sum(op.op_type == "MatMul" for op in members) == 2 and attention in kernels
    assert family_of_features(kernels[attention]) == "attention"
    assert kernels[attention]["flops"] == pytest.approx(sum(op_features(graph, op)["flops"] for op in members))
    assert set(kernels) == {a for a in kernel_of.values() if a}  # one entry per dispatch, none for its members
    erf = next(op for op in graph.ops if op.op_type == "Erf")
    assert kernel_of[erf.name] in kernels and kernel_of[erf.name] != erf.name  # GELU inside its GEMM or its own tree


def test_gpu_eval_on_vulkan(personality):
    pytest.importorskip("vulkan")
    from ragc.profiler.measure_gpu import measure_gpu_models

    graphs = model_set(["cnn_plain_96", "cnn_dw_224"])
    timings, skipped, _ = measure_gpu_models(graphs, 0.05, 2, Gate(extra_s=0.0))
    if not timings and skipped == list(graphs):
        pytest.skip("no Vulkan device")
    assert [t.name for t in timings] == ["cnn_plain_96", "cnn_dw_224"] and skipped == []
    for t in timings:
        kernels = sum(s["ms"] for s in t.samples)
        # the wall is a run's without timestamps, whose writes wait for the work before them: it can be a little
        # shorter than the timestamped dispatches' sum (lavapipe: 21.2 ms against 22.3)
        assert 0 < kernels < 1.5 * t.measured_ms
        assert {s["op_type"] for s in t.samples} >= {"Conv", "Gemm"}


def test_gpu_tile_features_follow_codegen_tiling():
    from ragc.costmodel.gpu_features import KEYS, gemm_shape, gpu_tile_features

    square = op_features(gemm(128, 256, 256), gemm(128, 256, 256).ops[0])
    ragged = op_features(gemm(100, 256, 100), gemm(100, 256, 100).ops[0])
    assert gemm_shape(square) == (128, 256, 256, 1)
    full = dict(zip(KEYS, gpu_tile_features(square), strict=True))
    padded = dict(zip(KEYS, gpu_tile_features(ragged), strict=True))
    assert full["gpu_padding"] == 0.0 and 0.3 < padded["gpu_padding"] < 0.5  # 100 of 128 rows and columns used
    g = conv(32, 28, 64, 3)
    assert gemm_shape(op_features(g, g.ops[0])) == (64, 28 * 28, 32 * 9, 1)  # implicit GEMM: out channels x pixels
    late = conv(512, 7, 512, 3)  # resnet18's last stage: split K, 16 pieces of its 8 tiles
    late_keys = dict(zip(KEYS, gpu_tile_features(op_features(late, late.ops[0])), strict=True))
    assert late_keys["gpu_splits"] == 16 and late_keys["gpu_workgroups"] == pytest.approx(np.log1p(8 * 16))
    dw = conv(32, 28, 32, 3, group=32)
    assert gpu_tile_features(op_features(dw, dw.ops[0]))[0] == 1.0  # depthwise runs as a direct kernel
    relu = unary("Relu", 1000)
    assert gpu_tile_features(op_features(relu, relu.ops[0])) == [0.0] * len(KEYS)


def test_quick_gpu_profile_keeps_every_gemm_shape():
    from ragc.profiler.profile import gpu_specs
    from ragc.profiler.specs import cpu_specs

    specs = list(cpu_specs(quick=True))
    gemms = [label for label, _ in specs if label.split()[0] in ("gemm", "matmul", "projection")]
    chosen = [label for label, _ in gpu_specs(specs, quick=True)]
    assert set(gemms) <= set(chosen) and len(chosen) < len(specs) / 2
    assert gpu_specs(specs, quick=False) == specs


def test_projection_chains_time_gemms_back_to_back_at_unit_gain():
    """The GPU's busy GEMM runs: alternating (k, n) and (n, k) weights, values neither growing nor vanishing."""
    from ragc.profiler.gpu_bench import prepare_gpu
    from ragc.profiler.specs import PROJECTION, projection_chain, projection_chains
    from runtime_min.backends.vulkan import VulkanBackend
    from runtime_min.options import LoadOptions

    assert len(projection_chains(quick=True)) == -(-len(PROJECTION) // 2)
    graph = projection_chain(16, 64, 96, length=6)
    assert [graph.tensors[op.outputs[0]].shape[-1] for op in graph.ops] == [96, 64] * 3
    x = np.random.default_rng(0).standard_normal((1, 16, 64)).astype(np.float32)
    want = x
    for i in range(6):
        want = want @ graph.tensors["wa" if i % 2 == 0 else "wb"].data
    backend = VulkanBackend(LoadOptions.make({}))
    exe = prepare_gpu(backend, graph)
    got = exe.run({"x": x})[graph.outputs[0]]
    exe.close()
    backend.close()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert 0.3 < float(np.std(want)) < 3.0


def silu_after_matmul_graph() -> Graph:
    """x @ w, then SiLU written as x * sigmoid(x) (onnxruntime runs the pair as one QuickGelu), plus a constant
    bias computed from two constants (folded at load)."""
    rng = np.random.default_rng(0)
    w, a = rng.standard_normal((64, 64)).astype(np.float32), np.ones(64, np.float32)
    tensors = {n: Tensor(n, (1, 16, 64), "float32") for n in ("x", "h", "s", "y", "out")}
    tensors |= {"w": Tensor("w", w.shape, "float32", w), "a": Tensor("a", (64,), "float32", a)}
    tensors |= {"b": Tensor("b", (64,), "float32", a), "bias": Tensor("bias", (64,), "float32")}
    ops = [
        Op("mm", "MatMul", ["x", "w"], ["h"]),
        Op("sig", "Sigmoid", ["h"], ["s"]),
        Op("silu", "Mul", ["h", "s"], ["y"]),
        Op("const_bias", "Add", ["a", "b"], ["bias"]),
        Op("add", "Add", ["y", "bias"], ["out"]),
    ]
    return Graph(ops, tensors, ["x"], ["out"], 17)


def test_cpu_kernels_follow_onnxruntime_fusions_and_folding():
    from ragc.costmodel import absorbed_ops
    from ragc.costmodel.cpu_fusion import FOLDED, cpu_kernel_of

    graph = silu_after_matmul_graph()
    kernel_of = cpu_kernel_of(graph)
    assert kernel_of["sig"] == kernel_of["silu"] != "mm"  # one QuickGelu kernel
    assert kernel_of["const_bias"] == FOLDED and kernel_of["mm"] == "mm"
    assert {"const_bias"} | ({"sig", "silu"} - {kernel_of["silu"]}) <= absorbed_ops(graph, "cpu")
    prices = CostModel(measured_personality()).graph_ms(graph, "cpu")
    assert prices["const_bias"] == 0.0 and prices[kernel_of["silu"]] > 0.0


def test_onnxruntime_nodes_without_an_op_name_are_attributed_by_the_tensor_they_write():
    from ragc.profiler.oneop import source_ops

    graph = silu_after_matmul_graph()
    optimized = onnx.helper.make_graph(
        [onnx.helper.make_node("QuickGelu", ["h"], ["y"], name="QuickGeluFusion_7", domain="com.microsoft")],
        "opt",
        [],
        [],
    )
    source = source_ops(graph, optimized)
    assert source("QuickGeluFusion_7") in ("sig", "silu") and source("mm") == "mm"
    assert source("mm/MatMulAddFusion/") == "mm" and source("ReorderOutput_1") is None
