"""The per-dispatch "barrier" of GPU programs (codegen/gpu/barriers.py): no device needed. Independent dispatches
(the Q, K and V projections of one input) need none; a read after a write, a write after a read (scratch reused
by lifetime) and the second pass of a split-K GEMM each need one."""

from __future__ import annotations

import json

import numpy as np
from gpu_harness import Builder

from codegen.gpu import emit
from codegen.gpu.barriers import barriers


def _program(graph) -> dict:
    artifact = emit(graph, "p1")
    return json.loads(artifact.files[artifact.meta["program"]])


def test_independent_projections_share_one_barrier():
    b = Builder()
    x = b.input("x", (16, 64))
    q, k, v = (b.op("MatMul", [x, b.weight(f"w{i}", (64, 64))], (16, 64)) for i in range(3))
    r = b.op("Relu", [q], (16, 64))  # reads q, a graph output, so a dispatch of its own
    waits = [d["barrier"] for d in _program(b.graph([q, k, v, r]))["dispatches"]]
    assert waits == [False, False, False, True]


def test_hazards_on_byte_ranges():
    t = {
        "a": {"region": "arena", "offset": 0, "nbytes": 256},
        "b": {"region": "arena", "offset": 256, "nbytes": 256},
        "c": {"region": "arena", "offset": 512, "nbytes": 256},
        "alias_a": {"region": "arena", "offset": 128, "nbytes": 64},  # inside a: scratch reused by lifetime
        "w": {"region": "weights", "offset": 0, "nbytes": 256},
    }
    assert barriers([(("b", "a"), 1), (("c", "a", "w"), 1)], t) == [False, False]  # two readers of a
    assert barriers([(("b", "a"), 1), (("c", "b"), 1)], t) == [False, True]  # read after write
    assert barriers([(("b", "a"), 1), (("alias_a", "c"), 1)], t) == [False, True]  # write after read
    assert barriers([(("b", "a"), 1), (("c", "a"), 1), (("a", "w"), 1)], t) == [False, False, True]


def test_split_k_reduction_waits():
    b = Builder()
    y = b.op("MatMul", [b.input("x", (4, 1024)), b.weight("w", (1024, 96), 0.05)], (4, 96))
    dispatches = _program(b.graph([y]))["dispatches"]
    assert [d["barrier"] for d in dispatches] == [False, True]
    assert np.all([isinstance(d["barrier"], bool) for d in dispatches])
