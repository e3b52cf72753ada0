"""The partitioning seam: cutting a model into several partitions changes no result."""

import numpy as np
from models import conv_bn_relu_model, save, two_input_model

import runtime_min
from ragc import ir
from ragc.frontend import load_model
from ragc.partition import partition
from ragc.pipeline import compile_model


def _chain(n: int) -> ir.Graph:
    tensors = {f"t{i}": ir.Tensor(f"t{i}", (4,), "float32") for i in range(n + 1)}
    ops = [ir.Op(f"op{i}", "Relu", [f"t{i}"], [f"t{i + 1}"]) for i in range(n)]
    return ir.Graph(ops, tensors, ["t0"], [f"t{n}"])


def test_one_device_gives_one_partition():
    parts = partition(_chain(5), {f"op{i}": "cpu" for i in range(5)})
    assert [p.ops for p in parts] == [[f"op{i}" for i in range(5)]]


def test_alternating_devices_give_one_partition_each():
    devices = {f"op{i}": ("cpu", "gpu")[i % 2] for i in range(4)}
    parts = partition(_chain(4), devices)
    assert [(p.device, p.ops) for p in parts] == [
        ("cpu", ["op0"]),
        ("gpu", ["op1"]),
        ("cpu", ["op2"]),
        ("gpu", ["op3"]),
    ]
    assert parts[1].graph.inputs == ["t1"] and parts[1].graph.outputs == ["t2"]


def test_merging_never_creates_a_cycle():
    # a -> b(gpu) -> c, and a -> c: a and c on the CPU must stay apart, else cpu -> gpu -> cpu loops
    t = {n: ir.Tensor(n, (4,), "float32") for n in ("x", "ta", "tb", "tc")}
    ops = [
        ir.Op("a", "Relu", ["x"], ["ta"]),
        ir.Op("b", "Relu", ["ta"], ["tb"]),
        ir.Op("c", "Add", ["ta", "tb"], ["tc"]),
    ]
    parts = partition(ir.Graph(ops, t, ["x"], ["tc"]), {"a": "cpu", "b": "gpu", "c": "cpu"})
    assert [p.ops for p in parts] == [["a"], ["b"], ["c"]]


def test_independent_same_device_branches_merge():
    graph = load_model_graph()
    parts = partition(graph, dict.fromkeys([op.name for op in graph.ops], "cpu"))
    assert len(parts) == 1


def load_model_graph():
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        return load_model(save(two_input_model(), f"{d}/m.onnx")).graph


def test_cuts_split_and_results_do_not_change(tmp_path):
    path = save(conv_bn_relu_model(), tmp_path / "m.onnx")
    whole = compile_model(path, tmp_path / "whole", devices="cpu")
    cut = compile_model(path, tmp_path / "cut", cut_before=["relu1", "conv2", "gap"], devices="cpu")
    assert len(whole.partitions) == 1 and len(cut.partitions) == 4
    x = np.random.default_rng(0).random((1, 3, 16, 16), np.float32)
    a = runtime_min.load(whole.bundle).run({"x": x})["y"]
    b = runtime_min.load(cut.bundle).run({"x": x})["y"]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
