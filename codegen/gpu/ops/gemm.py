"""Gemm and MatMul on the GPU: one tiled kernel (templates/gemm.comp.j2) with bias and a fused epilogue, the tile
chosen per shape, split-K (with an ordered reduction) where the output alone cannot fill the GPU."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from codegen.gpu.lowering import Dispatch, attr, broadcast_index, float_literal, fp32_reason, grid, lowers, numel
from codegen.gpu.ops.eltwise import Fragment, epilogue, identity_fragment, own_inputs
from ragc.ir import Graph, Op, Tensor

# tile shapes: BM x BN outputs per workgroup, BK deep, TM x TN per thread (TM, TN multiples of 4)
LARGE = {"BM": 64, "BN": 128, "BK": 16, "TM": 4, "TN": 8}  # the best of bench/gemm.py's sweep on an H200
MEDIUM = {"BM": 64, "BN": 64, "BK": 16, "TM": 4, "TN": 4}
SMALL = {"BM": 32, "BN": 64, "BK": 16, "TM": 4, "TN": 4}
THIN = {"BM": 16, "BN": 64, "BK": 16, "TM": 4, "TN": 4}  # M <= 16: the GEMV shapes of decoding
COOPMAT = {"BM": 128, "BN": 128, "BK": 32, "TM": 8, "TN": 8}  # coopmat_gemm.comp.j2's fixed tile (256 invocations)
COOPMAT_SHAPE = "coopmat16x8x16_f16f16f32f32"  # the fragments it multiplies: 16x16 f16 by 16x8 f16 into f32
COOPMAT_MIN = 64  # M and N from which a cooperative-matrix tile pays off
TARGET_GROUPS = 256  # workgroups that fill a large GPU about twice (an H200 has 132 SMs)
MAX_SPLITS = 16
MIN_SPLIT_STEPS = 4  # BK steps per split at least


@dataclass(frozen=True)
class GemmPlan:
    tile: dict[str, int]
    splits: int = 1  # split-K: K ranges summed by gemm_reduce.comp.j2 in a fixed order
    k_split: int = 0


def _groups(tile: dict[str, int], m: int, n: int, batch: int) -> int:
    return batch * -(-m // tile["BM"]) * -(-n // tile["BN"])


def target_groups(m: int) -> int:
    """TARGET_GROUPS, twice that when M (between 128 and 256, the range measured) leaves the last row of 64-row
    tiles partly empty: those workgroups finish early, and smaller pieces balance the rest (on the H200 ViT-B/16's
    GEMMs, M = 197, took 2.32 ms instead of 2.56; at M = 128 BERT's, GPT-2's and the Llama's were 0.03-0.12 ms
    slower so: docs/benchmarks.md)."""
    return 2 * TARGET_GROUPS if 128 < m <= 256 and m % MEDIUM["BM"] else TARGET_GROUPS


def gemm_plan(m: int, n: int, k: int, batch: int, split: bool = True, conv: bool = False) -> GemmPlan:
    """The tile for a batched m x n x k GEMM: the largest that still gives target_groups(m) workgroups (a GEMM that
    may not split, or a convolution's, aims at TARGET_GROUPS); when none does (the small-M GEMMs of batch-1
    transformers, the convs of a CNN's last stages with few output pixels), K is split until it does, each split at
    least MIN_SPLIT_STEPS tiles deep."""
    target = target_groups(m) if split and not conv else TARGET_GROUPS
    if m <= 16:
        tile = THIN
    else:
        fits = [t for t in (LARGE, MEDIUM, SMALL) if _groups(t, m, n, batch) >= target]
        tile = fits[0] if fits else MEDIUM if m >= 64 else SMALL
    groups = _groups(tile, m, n, batch)
    splits = min(MAX_SPLITS, -(-target // groups), k // (MIN_SPLIT_STEPS * tile["BK"])) if split else 1
    if splits <= 1:
        return GemmPlan(tile)
    k_split = -(-k // splits // tile["BK"]) * tile["BK"]
    return GemmPlan(tile, -(-k // k_split), k_split)


def tile_type(op: Op) -> str:
    """The GLSL type a GEMM-shaped op's tiles multiply and accumulate in (precision.narrow marks fp16 ones)."""
    return "float16_t" if op.attrs.get("ragc_math") == "float16" else "float"


def uses_coopmat(op: Op, m: int, n: int) -> bool:
    """Whether the op's GEMM runs on cooperative matrices (never split: one 128 x 128 tile holds its whole K)."""
    return bool(op.attrs.get("ragc_coopmat")) and min(m, n) >= COOPMAT_MIN


def tiled(
    op: Op, shape: tuple[int, int, int, int], tile: dict[str, int], buffers: tuple[str, ...], **params: Any
) -> Dispatch:
    """One GEMM dispatch without split-K: cooperative matrices (coopmat_gemm.comp.j2) where precision.narrow marked
    the op for them and M, N are large enough, else gemm.comp.j2 with `tile`; `params` as gemm_params takes them
    plus the epilogue's."""
    m, n, k, batch = shape
    fragment = {key: params.pop(key) for key in ("leaves", "epilogue") if key in params}
    if uses_coopmat(op, m, n):
        values, groups = gemm_params(m, n, k, batch, COOPMAT, **params)
        values.update(fragment, a_vec4=False, b_vec4=False)
        return Dispatch("coopmat_gemm.comp.j2", values, buffers, groups, requires=(COOPMAT_SHAPE,), subgroup=32)
    values, groups = gemm_params(m, n, k, batch, tile, **params)
    values.update(fragment, MT=tile_type(op))
    return Dispatch("gemm.comp.j2", values, buffers, groups)


def gemm_params(
    m: int,
    n: int,
    k: int,
    batch: int,
    tile: dict[str, int] | None = None,
    splits: int = 1,
    k_split: int = 0,
    **layout: Any,
) -> tuple[dict[str, Any], tuple[int, int, int]]:
    """Template params and workgroup counts of one batched GEMM; `layout` gives the operand strides and bases
    (a_rs, a_cs, a_base, b_rs, b_cs, b_base), im2col and bias keys as templates/gemm.comp.j2 reads them. With
    `splits` > 1 the kernel writes `splits` partial outputs (see gemm_dispatches)."""
    t = tile or gemm_plan(m, n, k, batch, split=False).tile
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
        "splits": splits,
        "k_split": k_split,
        "batch": batch,
        "MT": "float",
    }
    params.update(layout)
    per_thread = 4 * params["threads"]  # every invocation moves whole vec4s of both tiles
    assert t["BM"] * t["BK"] % per_thread == 0 and t["BN"] * t["BK"] % per_thread == 0, f"bad tile {t}"
    im2col = params["im2col"]
    params["a_vec4"] = params["a_cs"] == 1 and k % 4 == 0
    params["b_vec4"] = not im2col and params["b_cs"] == 1 and n % 4 == 0
    params["c_vec4"] = n % 4 == 0
    groups = (-(-n // t["BN"]), -(-m // t["BM"]), batch * splits)
    return params, groups


def gemm_dispatches(
    graph: Graph,
    op: Op,
    shape: tuple[int, int, int, int],
    layout: dict[str, Any],
    operands: tuple[str, str],
    bias: tuple[str, str, str] | None = None,
    out: str | None = None,
) -> list[Dispatch]:
    """GEMM (m, n, k, batch) of `op` as gemm_plan decides: one dispatch, or a split-K pass into a temporary and
    the ordered reduction. `bias`: (tensor, GLSL index of m, nq and b, beta literal); the op's fused epilogue is
    applied last, unless `out` names the tensor to write (then none)."""
    m, n, k, batch = shape
    plan = gemm_plan(m, n, k, batch, split=not uses_coopmat(op, m, n), conv=op.op_type == "Conv")
    bias_params = {"bias_index": bias[1], "beta": bias[2]} if bias else {}
    extra = (bias[0],) if bias else ()

    def tail(first: int) -> tuple[Fragment, str]:
        return (identity_fragment("ragc_epilogue"), out) if out else epilogue(graph, op, first)

    if plan.splits == 1:
        fragment, final = tail(3 + len(extra))
        buffers = (final, *operands, *extra, *fragment.tensors)
        leaves = {"leaves": fragment.buffers, "epilogue": fragment.function}
        return [tiled(op, shape, plan.tile, buffers, **layout, **bias_params, **leaves)]
    partial = f"{op.name}/splitk"
    graph.tensors[partial] = Tensor(partial, (plan.splits * batch * m * n,), "float32")
    params, groups = gemm_params(m, n, k, batch, plan.tile, plan.splits, plan.k_split, **layout)
    params["MT"] = tile_type(op)
    fragment, final = tail(2 + len(extra))
    reduce = {"count": batch * m * n, "splits": plan.splits, "M": m, "N": n, "bias_index": "", "beta": "1.0"}
    reduce.update(bias_params, leaves=fragment.buffers, epilogue=fragment.function)
    return [
        Dispatch("gemm.comp.j2", params, (partial, *operands), groups),
        Dispatch("gemm_reduce.comp.j2", reduce, (final, partial, *extra, *fragment.tensors), grid(reduce["count"])),
    ]


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
    inputs = own_inputs(op)
    bias = None
    if len(inputs) > 2 and inputs[2]:
        index = broadcast_index(graph.tensors[inputs[2]].shape, (m, n), f"(m * {n}u + nq)")
        bias = (inputs[2], index, float_literal(attr(op, "beta", 1.0)))
    return gemm_dispatches(graph, op, (m, n, k, 1), layout, (inputs[0], inputs[1]), bias)


@lowers("MatMul", check=_gemm_reason)
def lower_matmul(graph: Graph, op: Op) -> list[Dispatch]:
    a, b = graph.tensors[op.inputs[0]].shape, graph.tensors[op.inputs[1]].shape
    m, k = (1, a[0]) if len(a) == 1 else a[-2:]
    n = 1 if len(b) == 1 else b[-1]
    a_batch, b_batch = tuple(a[:-2]), tuple(b[:-2])
    out_batch = tuple(np.broadcast_shapes(a_batch, b_batch))
    if len(b) >= 2 and numel(b_batch) == 1:  # one B for every batch: the batches' rows are one taller A
        m, a_batch, b_batch, out_batch = m * numel(out_batch), (), (), ()
    layout = {
        "a_rs": k,
        "a_cs": 1,
        "a_base": f"({broadcast_index(a_batch, out_batch, 'b')}) * {m * k}u",
        "b_rs": n,
        "b_cs": 1,
        "b_base": f"({broadcast_index(b_batch, out_batch, 'b')}) * {k * n}u",
    }
    return gemm_dispatches(graph, op, (m, n, k, numel(out_batch)), layout, (op.inputs[0], op.inputs[1]))
