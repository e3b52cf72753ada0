"""GPU code generation without a device: GLSL rendering and compiling, lowering registry, fusion, layout, emit."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gpu_harness import Builder

from codegen.gpu import emit, glsl, lower, unsupported_reason
from codegen.gpu.fuse import fuse
from codegen.gpu.lowering import ALIAS_OPS, LOWERINGS, LoweringError, broadcast_index, float_literal, grid, lowers


def _program(artifact) -> dict:
    return json.loads(artifact.files[artifact.meta["program"]])


def test_render_is_strict():
    with pytest.raises(glsl.ShaderError, match="pass that parameter"):
        glsl.render("eltwise.comp.j2", {})
    with pytest.raises(glsl.ShaderError, match="not found"):
        glsl.render("nope.comp.j2", {})


def test_compile_caches_valid_spirv(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    src = "#version 450\nlayout(local_size_x = 1) in;\nvoid main() {}\n"
    spirv = glsl.compile_glsl(src)
    assert spirv[:4] == glsl.SPIRV_MAGIC
    cached = list((tmp_path / "ragc" / "spirv").glob("*.spv"))
    assert len(cached) == 1 and cached[0].read_bytes() == spirv
    assert glsl.compile_glsl(src) == spirv


def test_compile_error_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(glsl.ShaderError, match="glslc failed") as err:
        glsl.compile_glsl("#version 450\nvoid main() { nope; }\n", "bad")
    assert "\n" not in str(err.value)


def test_broadcast_index():
    assert broadcast_index((2, 3), (2, 3), "i") == "i"
    assert broadcast_index((), (4, 5), "i") == "0u"
    assert broadcast_index((5,), (4, 5), "i") == "(i % 5u)"
    assert broadcast_index((4, 1), (4, 5), "i") == "(i / 5u)"
    # every element of a (3, 1, 5) tensor broadcast to (2, 3, 4, 5) agrees with numpy
    src, dst = (3, 1, 5), (2, 3, 4, 5)
    expr = broadcast_index(src, dst, "i").replace("u", "").replace("/", "//")
    want = np.broadcast_to(np.arange(15).reshape(src), dst).reshape(-1)
    assert [eval(expr, {"i": i}) for i in range(want.size)] == want.tolist()  # noqa: S307 (our own expression)


def test_grid_folds_large_launches():
    assert grid(1000) == (4, 1, 1)
    assert grid(256 * 70000) == (65535, 2, 1)


def test_float_literal_round_trips():
    assert float_literal(1) == "1.0"
    assert float(float_literal(0.1)) == float(np.float32(0.1))
    assert float_literal(float("inf")).startswith("uintBitsToFloat")


def test_registering_twice_fails():
    with pytest.raises(LoweringError, match="lowered twice"):
        lowers("Add")(lambda graph, op: [])


def test_unsupported_reasons():
    b = Builder()
    i = b.input("i", (4,), "float16")  # float16 arithmetic stays on the CPU (only Cast takes it)
    x = b.input("x", (1, 2, 4, 4, 4))
    add = b.op("Add", [i, i], (4,), "float16")
    conv = b.op("Conv", [x, b.weight("w", (2, 2, 1, 1, 1))], (1, 2, 4, 4, 4), kernel_shape=[1, 1, 1])
    drop = b.op("Dropout", [b.input("y", (3,))], (3,))
    b.ops[-1].outputs.append("mask")
    b.tensors["mask"] = b.tensors[drop].__class__("mask", (3,), "bool")
    top = b.op("TopK", [x], (1,))
    g = b.graph([add, conv, drop, top])
    reasons = {op.op_type: unsupported_reason(g, op) for op in g.ops}
    assert "float32" in reasons["Add"] and "2-D" in reasons["Conv"]
    assert "mask" in reasons["Dropout"] and "no GPU kernel" in reasons["TopK"]
    with pytest.raises(LoweringError, match="cannot run on the GPU"):
        emit(g, "p1")


def test_alias_ops_are_listed_and_not_lowered():
    assert {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"} == ALIAS_OPS
    assert not ALIAS_OPS & set(LOWERINGS)


def _chain_graph():
    b = Builder()
    x = b.input("x", (1, 8, 6, 6))
    c = b.op(
        "Conv",
        [x, b.weight("w", (16, 8, 3, 3)), b.weight("b", (16,))],
        (1, 16, 6, 6),
        kernel_shape=[3, 3],
        pads=[1, 1, 1, 1],
    )
    s = b.op("Mul", [c, b.op("Sigmoid", [c], (1, 16, 6, 6))], (1, 16, 6, 6))  # SiLU: reads the conv twice
    e = b.op("Add", [b.op("Exp", [s], (1, 16, 6, 6)), b.const("one", np.float32(1.0))], (1, 16, 6, 6))
    p = b.op("MaxPool", [s], (1, 16, 3, 3), kernel_shape=[2, 2], strides=[2, 2])
    t = b.op("Tanh", [b.op("Neg", [p], (1, 16, 3, 3))], (1, 16, 3, 3))
    return b.graph([e, t]), (c, s, e, p, t)


def test_fusion_builds_epilogues_and_chains():
    graph, (c, s, e, p, t) = _chain_graph()
    fused = fuse(graph)
    kinds = [(op.op_type, op.outputs[0]) for op in fused.ops]
    # conv+sigmoid+mul fuse (s has two readers, so it stays a tensor); exp+add and neg+tanh become chains
    assert kinds == [("Conv", s), ("Add", e), ("MaxPool", p), ("Tanh", t)]
    assert [o.op_type for o in fused.ops[0].attrs["ragc_epilogue"].ops] == ["Sigmoid", "Mul"]
    assert [o.op_type for o in fused.ops[1].attrs["ragc_chain"].ops] == ["Exp", "Add"]
    assert graph.ops[0].outputs == [c]  # the input graph is untouched


def test_emit_is_deterministic_and_complete():
    graph, _ = _chain_graph()
    first, second = emit(graph, "p7"), emit(graph, "p7")
    assert first.format == "spirv-v2" and first.files == second.files and first.meta == second.meta
    assert first.store.data() == second.store.data()
    assert sorted(name for name in first.files if not name.endswith(".spv")) == ["p7.gpu.json"]
    program = _program(first)
    assert len(program["dispatches"]) == 4
    assert {d["kernel"] for d in program["dispatches"]} <= set(first.files)
    regions = {n: t["region"] for n, t in program["tensors"].items()}
    assert regions["x"] == "arena" and regions["w"] == "weights"
    w = program["tensors"]["w"]
    weights = np.frombuffer(first.store.data(), np.float32, 16 * 8 * 9, w["store_offset"])
    assert np.array_equal(weights.reshape(16, 8, 3, 3), graph.tensors["w"].data)


def test_scratch_is_reused_by_lifetime():
    b = Builder()
    y = b.input("x", (1, 4, 64, 64))
    for _ in range(6):
        y = b.op("MaxPool", [y], (1, 4, 64, 64), kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    graph = b.graph([y])
    program = _program(emit(graph, "p1"))
    scratch = [t for n, t in program["tensors"].items() if n not in graph.inputs + graph.outputs]
    one = 4 * 64 * 64 * 4
    assert len(scratch) == 5 and program["arena_bytes"] <= 4 * one
    for i, a in enumerate(program["dispatches"][1:], 1):  # a dispatch never reads what it overwrites
        src, dst = program["tensors"][a["bindings"][1]], program["tensors"][a["bindings"][0]]
        assert src["offset"] != dst["offset"], i


def test_alias_shares_the_buffer():
    b = Builder()
    x = b.input("x", (2, 3, 4))
    r = b.op("Relu", [x], (2, 3, 4))
    f = b.op("Flatten", [r], (2, 12), axis=1)
    y = b.op("Exp", [f], (2, 12))
    _, steps, alias = lower(b.graph([y]))
    assert alias == {f: r} and len(steps) == 2
    program = _program(emit(b.graph([y]), "p1"))
    assert program["tensors"][f]["offset"] == program["tensors"][r]["offset"]
