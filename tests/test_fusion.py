"""Fused units on tiny ir.Graphs built in code, and the placement problem built from them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ragc.ir import Graph, Op, Tensor
from ragc.placement import build_problem, solve
from ragc.placement.build import peak_activation_bytes
from ragc.placement.units import build_units

SHAPE = (1, 4, 8, 8)  # 1 KiB of float32


def graph(ops: list[tuple[str, str, list[str], list[str]]], outputs: list[str], consts: tuple[str, ...] = ()) -> Graph:
    """ops as (name, op_type, inputs, outputs); tensors named "w*" or listed in consts are constants."""
    names = {t for _, _, ins, outs in ops for t in ins + outs if t}
    tensors = {}
    for name in sorted(names):
        data = np.zeros(SHAPE, np.float32) if name.startswith("w") or name in consts else None
        tensors[name] = Tensor(name, SHAPE, "float32", data)
    produced = {t for _, _, _, outs in ops for t in outs}
    inputs = sorted(n for n in names if n not in produced and tensors[n].data is None)
    return Graph([Op(n, t, i, o) for n, t, i, o in ops], tensors, inputs, outputs)


def units(g: Graph) -> list[list[str]]:
    return [ops for _, ops in build_units(g)]


def test_conv_chain_fuses_its_activations() -> None:
    g = graph(
        [
            ("c1", "Conv", ["x", "w1"], ["a"]),
            ("bn", "Add", ["a", "wb"], ["b"]),
            ("r1", "Relu", ["b"], ["c"]),
            ("c2", "Conv", ["c", "w2"], ["d"]),
            ("r2", "Clip", ["d"], ["y"]),
        ],
        ["y"],
    )
    assert build_units(g) == [("c1", ["c1", "bn", "r1"]), ("c2", ["c2", "r2"])]


def test_tensor_with_two_readers_ends_the_chain() -> None:
    g = graph(
        [
            ("c", "Conv", ["x", "w"], ["a"]),
            ("r", "Relu", ["a"], ["b"]),
            ("s", "Sigmoid", ["a"], ["d"]),
            ("m", "Mul", ["b", "d"], ["y"]),
        ],
        ["y"],
    )
    assert units(g) == [["c"], ["r"], ["s", "m"]]  # the Mul joins the closer of its two producers


def test_graph_output_is_not_fused_through() -> None:
    g = graph([("c", "Conv", ["x", "w"], ["a"]), ("r", "Relu", ["a"], ["y"])], ["a", "y"])
    assert units(g) == [["c"], ["r"]]


def test_metadata_joins_its_producer_even_with_other_readers() -> None:
    g = graph(
        [
            ("g", "Gemm", ["x", "w"], ["a"]),
            ("f", "Flatten", ["a"], ["b"]),
            ("r", "Relu", ["a"], ["c"]),
            ("u", "Unsqueeze", ["b", "axes"], ["y"]),
        ],
        ["y", "c"],
        consts=("axes",),
    )
    assert units(g) == [["g", "f", "u"], ["r"]]


def test_residual_add_joins_the_closest_producer() -> None:
    g = graph(
        [
            ("c1", "Conv", ["x", "w1"], ["a"]),
            ("r1", "Relu", ["a"], ["b"]),
            ("c2", "Conv", ["b", "w2"], ["c"]),
            ("c3", "Conv", ["b", "w3"], ["d"]),
            ("add", "Add", ["c", "d"], ["e"]),
            ("r", "Relu", ["e"], ["y"]),
        ],
        ["y"],
    )
    assert units(g) == [["c1", "r1"], ["c2"], ["c3", "add", "r"]]


def test_fusion_never_creates_a_cycle() -> None:
    # The Reshape joins the conv's unit and reads a tensor of the Split's unit; the Add may then join the conv's
    # unit but not the (closer) Split's, which would make the two units read each other.
    g = graph(
        [
            ("c", "Conv", ["x", "w"], ["a"]),
            ("g", "Split", ["x2"], ["shape", "z"]),
            ("r", "Reshape", ["a", "shape"], ["b"]),
            ("add", "Add", ["b", "z"], ["y"]),
        ],
        ["y"],
    )
    assert build_units(g) == [("g", ["g"]), ("c", ["c", "r", "add"])]


def test_units_are_in_dependency_order_and_deterministic() -> None:
    g = graph(
        [
            ("c1", "Conv", ["x", "w1"], ["a"]),
            ("c2", "Conv", ["x", "w2"], ["b"]),
            ("add", "Add", ["b", "a"], ["c"]),
            ("s", "Softmax", ["c"], ["y"]),
        ],
        ["y"],
    )
    first = build_units(g)
    assert first == build_units(g)
    assert [name for name, _ in first] == ["c1", "c2", "s"]
    assert first[1] == ("c2", ["c2", "add"])


def test_build_problem_costs_edges_and_host_bytes() -> None:
    g = graph(
        [
            ("c1", "Conv", ["x", "w1"], ["a"]),
            ("r1", "Relu", ["a"], ["b"]),
            ("c2", "Conv", ["b", "w2"], ["c"]),
            ("s", "Softmax", ["c"], ["y"]),
        ],
        ["y"],
    )

    def op_cost(_: Graph, op: Op, device: str) -> float:
        if device == "npu" and op.op_type == "Softmax":
            return math.inf
        return {"cpu": 1.0, "npu": 0.25}[device]

    problem = build_problem(g, ["cpu", "npu"], op_cost, lambda s, t, n: 0.0 if s == t else 0.5, {"npu": 10_000})
    assert [u.name for u in problem.units] == ["c1", "c2", "s"]
    c1, c2, s = problem.units
    assert c1.cost_ms == {"cpu": 2.0, "npu": 0.5} and s.cost_ms["npu"] == math.inf
    assert (c1.host_in_bytes, c1.host_out_bytes, s.host_out_bytes) == (1024, 0, 1024)
    assert c1.mem_bytes == 1024  # its weights; activations are reused by lifetime
    assert [(e.src, e.dst, e.nbytes) for e in problem.edges] == [("c1", "c2", 1024), ("c2", "s", 1024)]
    assert peak_activation_bytes(g) == 2 * 1024  # an op's input and output at once
    assert problem.capacity_bytes == {"npu": 10_000 - 2 * 1024}
    plan = solve(problem)
    assert plan.assignment["s"] == "cpu"
    assert plan.predicted_ms == pytest.approx(0.5 + 0.5 + 0.25 + 0.5 + 1.0)  # input in, c1, c2 on the NPU, s


def test_a_long_chain_fits_by_its_peak_not_its_sum_of_activations() -> None:
    """Twenty 1 KiB activations in a row fit a 4 KiB device: only an op's input and output are live at once (the
    sum of every tensor written once refused QDQ BERT-base on a 2 GiB GPU)."""
    ops = [(f"r{i}", "Sigmoid", [f"t{i}"], [f"t{i + 1}"]) for i in range(20)]
    g = graph(ops, ["t20"])
    problem = build_problem(g, ["gpu"], lambda *_: 1.0, lambda s, t, n: 0.0, {"gpu": 4 * 1024})
    assert peak_activation_bytes(g) == 2 * 1024 and problem.capacity_bytes == {"gpu": 2 * 1024}
    assert set(solve(problem).assignment.values()) == {"gpu"}
