"""Gemm and MatMul on the GPU: one tiled kernel (templates/gemm.comp.j2) with bias and a fused epilogue."""

from __future__ import annotations

from typing import Any

import numpy as np

from codegen.gpu.lowering import Dispatch, attr, broadcast_index, float_literal, fp32_reason, lowers, numel
from codegen.gpu.ops.eltwise import epilogue, identity_fragment, own_inputs
from ragc.ir import Graph, Op

# tile shapes: BM x BN outputs per workgroup, BK deep, TM x TN per thread (TM, TN multiples of 4)
LARGE = {"BM": 64, "BN": 128, "BK": 16, "TM": 4, "TN": 8}  # the best of bench/gemm.py's sweep on an H200
MEDIUM = {"BM": 64, "BN": 64, "BK": 16, "TM": 4, "TN": 4}
THIN = {"BM": 16, "BN": 64, "BK": 16, "TM": 4, "TN": 4}


def gemm_tile(m: int, n: int, batch: int) -> dict[str, int]:
    """The tile for an m x n output repeated `batch` times: large tiles only when they still fill a big GPU."""
    if m <= 16:
        return THIN
    if m >= 64 and n >= 128 and batch * -(-m // 64) * -(-n // 128) >= 128:
        return LARGE
    return MEDIUM


def gemm_params(
    m: int, n: int, k: int, batch: int, tile: dict[str, int] | None = None, **layout: Any
) -> tuple[dict[str, Any], tuple[int, int, int]]:
    """Template params and workgroup counts of one batched GEMM; `layout` gives the operand strides and bases
    (a_rs, a_cs, a_base, b_rs, b_cs, b_base), im2col and bias keys as templates/gemm.comp.j2 reads them."""
    t = tile or gemm_tile(m, n, batch)
    params: dict[str, Any] = {
        "M": m,
        "N": n,
        "K": k,
        **t,
        "threads": (t["BM"] // t["TM"]) * (t["BN"] // t["TN"]),
        "check_m": m % t["BM"] != 0,
        "check_n": n % t["BN"] != 0,
        "check_k": k % t["BK"] != 0,
        "im2col": False,
        "bias_index": "",
        "beta": "1.0",
        "alpha": "1.0",
        "b_rs": 0,
        "b_cs": 0,
        "leaves": (),
        "epilogue": identity_fragment("ragc_epilogue").function,
    }
    params.update(layout)
    per_thread = 4 * params["threads"]  # every invocation moves whole vec4s of both tiles
    assert t["BM"] * t["BK"] % per_thread == 0 and t["BN"] * t["BK"] % per_thread == 0, f"bad tile {t}"
    im2col = params["im2col"]
    params["a_vec4"] = params["a_cs"] == 1 and k % 4 == 0
    params["b_vec4"] = not im2col and params["b_cs"] == 1 and n % 4 == 0
    params["c_vec4"] = n % 4 == 0
    groups = (-(-n // t["BN"]), -(-m // t["BM"]), batch)
    return params, groups


def _gemm_reason(graph: Graph, op: Op) -> str | None:
    reason = fp32_reason(graph, op)
    if reason:
        return reason
    shapes = [graph.tensors[n].shape for n in op.inputs if n]
    if op.op_type == "Gemm" and (len(shapes[0]) != 2 or len(shapes[1]) != 2):
        return "Gemm needs 2-D A and B"
    if op.op_type == "MatMul" and min(len(s) for s in shapes) < 1:
        return "MatMul needs inputs of rank 1 or more"
    return None


def _with_epilogue(graph: Graph, op: Op, params: dict[str, Any], bindings: list[str]) -> tuple[str, ...]:
    """Add the op's fused epilogue to `params`; returns every bound tensor, output first."""
    fragment, out = epilogue(graph, op, len(bindings) + 1)
    params["leaves"] = fragment.buffers
    params["epilogue"] = fragment.function
    return (out, *bindings, *fragment.tensors)


@lowers("Gemm", check=_gemm_reason)
def lower_gemm(graph: Graph, op: Op) -> list[Dispatch]:
    a, b = graph.tensors[op.inputs[0]].shape, graph.tensors[op.inputs[1]].shape
    trans_a, trans_b = attr(op, "transA", 0), attr(op, "transB", 0)
    m, k = (a[1], a[0]) if trans_a else a
    n = b[0] if trans_b else b[1]
    layout: dict[str, Any] = {
        "a_rs": 1 if trans_a else k,
        "a_cs": m if trans_a else 1,
        "a_base": "0u",
        "b_rs": 1 if trans_b else n,
        "b_cs": k if trans_b else 1,
        "b_base": "0u",
        "alpha": float_literal(attr(op, "alpha", 1.0)),
    }
    bindings = [op.inputs[0], op.inputs[1]]
    inputs = own_inputs(op)
    if len(inputs) > 2 and inputs[2]:
        bias = graph.tensors[op.inputs[2]]
        layout["bias_index"] = broadcast_index(bias.shape, (m, n), f"(m * {n}u + nq)")
        layout["beta"] = float_literal(attr(op, "beta", 1.0))
        bindings.append(op.inputs[2])
    params, groups = gemm_params(m, n, k, 1, **layout)
    return [Dispatch("gemm.comp.j2", params, _with_epilogue(graph, op, params, bindings), groups)]


@lowers("MatMul", check=_gemm_reason)
def lower_matmul(graph: Graph, op: Op) -> list[Dispatch]:
    a, b = graph.tensors[op.inputs[0]].shape, graph.tensors[op.inputs[1]].shape
    m, k = (1, a[0]) if len(a) == 1 else a[-2:]
    n = 1 if len(b) == 1 else b[-1]
    a_batch, b_batch = tuple(a[:-2]), tuple(b[:-2])
    out_batch = tuple(np.broadcast_shapes(a_batch, b_batch))
    layout = {
        "a_rs": k,
        "a_cs": 1,
        "a_base": f"({broadcast_index(a_batch, out_batch, 'b')}) * {m * k}u",
        "b_rs": n,
        "b_cs": 1,
        "b_base": f"({broadcast_index(b_batch, out_batch, 'b')}) * {k * n}u",
    }
    params, groups = gemm_params(m, n, k, numel(out_batch), **layout)
    return [Dispatch("gemm.comp.j2", params, _with_epilogue(graph, op, params, list(op.inputs[:2])), groups)]
