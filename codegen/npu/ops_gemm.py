"""GEMM-family lowerings: MatMul, Gemm, Conv (im2col, grouped), MatMulInteger and QLinearMatMul (int8), each one
GEMM (or, with a single row, GEMV) call whose epilogue takes the elementwise chain fused after it (codegen.npu.fuse).

bf16 GEMMs accumulate in fp32 within a call and keep C in bf16 between the K / k calls (the aie2p mm.cc kernels
load and store C per call); the epilogue runs on the fp32 accumulator of the last call.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import numpy as np

from codegen.npu.catalog import CONV_GROUPED, GEMV, MATMUL, MLIR_DTYPES, Buffer
from codegen.npu.fuse import chain_entries, clip_bounds, is_depthwise
from codegen.npu.lower import Operand, ProgramBuilder, all_of, float_reason, lowers, operand, tensor
from codegen.npu.ops_vector import lower_dwconv
from ragc import ir

EPILOGUES = "bias,scale,add,mul,relu,gelu,silu,sigmoid,tanh,requantize"  # linked into every GEMM xclbin


def _epilogue(b: ProgramBuilder, graph: ir.Graph, op: ir.Op, to_gemm: list[dict[str, Any]], n: int) -> tuple:
    """The fused chain of `op` as epilogue entries, their extra operands, and the chain's last tensor.
    `to_gemm` lays a runtime tensor of the GEMM output's logical shape out as [M, N]."""
    entries: list[dict[str, Any]] = []
    operands: list[tuple[str, Operand]] = []
    via = op.outputs[0]
    for kind, fused, other in chain_entries(graph, op, b.fusion.get(op.name, [])):
        entry: dict[str, Any] = {"kind": kind, "op": fused.name}
        if kind == "bias":
            row = np.asarray(tensor(graph, other).data, np.float32).reshape(-1)
            operands.append((f"bias{len(operands)}", Operand((n,), data=np.broadcast_to(row, (n,)).copy())))
            entry["input"] = operands[-1][0]
        elif kind == "scale":
            entry["value"] = float(np.asarray(tensor(graph, other).data).reshape(-1)[0])
        elif kind == "clip":
            entry["min"], entry["max"] = clip_bounds(graph, fused)
        elif kind in ("add", "mul"):
            shape = tensor(graph, via).shape
            operands.append((f"R{len(operands)}", Operand(_gemm_shape(shape, n), tensor=other, transforms=to_gemm)))
            entry["input"] = operands[-1][0]
        entries.append(entry)
        via = fused.outputs[0]
    return entries, operands, via


def _gemm_shape(shape: tuple[int, ...], n: int) -> tuple[int, int]:
    return math.prod(shape) // n, n


def gemm_step(
    b: ProgramBuilder,
    graph: ir.Graph,
    op: ir.Op,
    a: Operand,
    w: Operand,
    out_transforms: list[dict[str, Any]],
    to_gemm: list[dict[str, Any]],
    lowering: str,
    dtype: str = "bfloat16",
    out_dtype: str = "bfloat16",
    leading: list[dict[str, Any]] | None = None,
) -> None:
    """C[m, n] = epilogue(A[m, k] @ B[k, n]): GEMV when m is 1, else the whole-array GEMM at the model's tiling.
    `leading` epilogue entries (a Gemm's own bias, a requantization) come before the fused chain's."""
    (m, k), n = a.shape, w.shape[1]
    entries, extra_operands, last = _epilogue(b, graph, op, to_gemm, n)
    entries = [*(leading or []), *entries]
    extra_operands = [*(("bias", Operand((n,), data=e.pop("data"))) for e in entries if "data" in e)] + extra_operands
    in_dt, kind_dt = ("int8", "int8") if dtype == "int8" else ("bfloat16", "bf16")
    if m == 1:
        spec, padded = GEMV, GEMV.padded((k, n))
        (kp, np_), mp, variant, tiling = padded, 1, f"{MLIR_DTYPES[in_dt]}_{MLIR_DTYPES[out_dtype]}", None
    else:
        tiling, (mp, kp, np_) = b.timing.gemm_plan((m, k, n), kind_dt, out_dtype, loaded=b.tiling)
        b.tiling = tiling
        spec, padded = MATMUL, (mp, kp, np_)
        variant = f"{MLIR_DTYPES[in_dt]}_{MLIR_DTYPES[out_dtype]}_{tiling.m}x{tiling.k}x{tiling.n}_{tiling.cols}c"
    buffers = [Buffer("A", in_dt, (mp, kp)), Buffer("B", in_dt, (kp, np_))]
    buffers += [Buffer(role, "bfloat16", (np_,) if o.data is not None else (mp, np_)) for role, o in extra_operands]
    buffers.append(Buffer("C", out_dtype, (mp, np_)))
    build = {"dtype_in": MLIR_DTYPES[in_dt], "dtype_out": MLIR_DTYPES[out_dtype], "epilogues": EPILOGUES}
    extra: dict[str, Any] = {"dtype": kind_dt, "out_dtype": out_dtype, "epilogue": entries, "build_args": build}
    if tiling is not None:
        extra["tiling"] = asdict(tiling)
        build.update(tiling.build_args())
    mode = "-".join(e["kind"] for e in entries)
    operands = [a, w, *(o for _, o in extra_operands)]
    output = {"tensor": last, "shape": [m, n], "transforms": out_transforms}
    b.add_step(op, spec, padded, buffers, operands, output, lowering, variant, mode, extra)


def check_matmul(graph: ir.Graph, op: ir.Op) -> str | None:
    a, w = (tensor(graph, n) for n in op.inputs[:2])
    if len(a.shape) < 2 or len(w.shape) < 2:
        return "MatMul with a 1-D operand: the NPU GEMM takes matrices; run it on another processor"
    if math.prod(w.shape[:-2]) != 1:
        return f"batched MatMul (B is {list(w.shape)}): the NPU GEMM takes one B matrix; run it elsewhere"
    return None


def _matmul_operands(graph: ir.Graph, op: ir.Op) -> tuple[Operand, Operand, list[dict[str, Any]], int, int, int]:
    a_t, w_t = (tensor(graph, n) for n in op.inputs[:2])
    k, n = w_t.shape[-2:]
    m = math.prod(a_t.shape) // k
    a = operand(graph, a_t.name, [{"reshape": [m, k]}], (m, k), lambda x: x.reshape(m, k))
    w = operand(graph, w_t.name, [{"reshape": [k, n]}], (k, n), lambda x: x.reshape(k, n))
    return a, w, [{"reshape": [m, n]}], m, k, n


@lowers("MatMul", check=all_of(float_reason, check_matmul))
def lower_matmul(b: ProgramBuilder, graph: ir.Graph, op: ir.Op) -> None:
    a, w, to_gemm, *_ = _matmul_operands(graph, op)
    last = b.fusion.get(op.name, [op.name])[-1]
    y = tensor(graph, graph.op(last).outputs[0])
    gemm_step(b, graph, op, a, w, [{"reshape": list(y.shape)}], to_gemm, "gemm")


def check_gemm(graph: ir.Graph, op: ir.Op) -> str | None:
    c = tensor(graph, op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] else None
    w = tensor(graph, op.inputs[1])
    if float(op.attrs.get("alpha", 1.0)) != 1.0 and not w.is_constant:
        return "Gemm with alpha != 1 and a runtime B: fold alpha into B first, or run it elsewhere"
    if c is None:
        return None
    n = w.shape[0] if op.attrs.get("transB", 0) else w.shape[1]
    rows, cols = ((1, 1) + tuple(c.shape))[-2:]
    if not c.is_constant or rows != 1 or cols not in (1, n):
        return f"Gemm bias {c.name} {list(c.shape)} is not a constant row of {n}: the NPU folds only per-column bias"
    return None


@lowers("Gemm", check=all_of(float_reason, check_gemm))
def lower_gemm(b: ProgramBuilder, graph: ir.Graph, op: ir.Op) -> None:
    a_t, w_t = (tensor(graph, n) for n in op.inputs[:2])
    trans_a, trans_b = int(op.attrs.get("transA", 0)), int(op.attrs.get("transB", 0))
    alpha, beta = float(op.attrs.get("alpha", 1.0)), float(op.attrs.get("beta", 1.0))
    m, k = a_t.shape[::-1] if trans_a else a_t.shape
    n = w_t.shape[0] if trans_b else w_t.shape[1]
    a = operand(graph, a_t.name, [{"transpose": [1, 0]}] if trans_a else [], (m, k), lambda x: x.T if trans_a else x)
    w = operand(
        graph, w_t.name, [{"transpose": [1, 0]}] if trans_b else [], (k, n), lambda x: alpha * (x.T if trans_b else x)
    )
    leading = []
    if len(op.inputs) > 2 and op.inputs[2]:
        bias = beta * np.broadcast_to(np.asarray(tensor(graph, op.inputs[2]).data, np.float32).reshape(-1), (n,))
        leading.append({"kind": "bias", "op": op.name, "input": "bias", "data": bias.copy()})
    gemm_step(b, graph, op, a, w, [], [], "gemm", leading=leading)


def check_conv(graph: ir.Graph, op: ir.Op) -> str | None:
    x, w = (tensor(graph, n) for n in op.inputs[:2])
    if len(x.shape) != 4:
        return f"Conv on a {len(x.shape)}-D input: the NPU lowering handles 2-D convolutions (NCHW) only"
    if not w.is_constant or any(n and not tensor(graph, n).is_constant for n in op.inputs[2:]):
        return "Conv with runtime weights or bias: the NPU packs Conv weights at compile time"
    if op.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return "Conv with auto_pad SAME_*: give explicit pads (the front end normally does)"
    return None


def im2col_attrs(op: ir.Op, kh: int, kw: int, oh: int, ow: int) -> dict[str, Any]:
    return {
        "kernel": [kh, kw],
        "strides": list(op.attrs.get("strides", [1, 1])),
        "pads": list(op.attrs.get("pads", [0, 0, 0, 0])),
        "dilations": list(op.attrs.get("dilations", [1, 1])),
        "output": [oh, ow],
    }


def lower_conv_gemm(b: ProgramBuilder, graph: ir.Graph, op: ir.Op) -> None:
    """Conv as GEMM: im2col of X on the host [N*OH*OW, C*kh*kw] @ W reshaped [C*kh*kw, Cout] -> NCHW; a bias
    becomes the first epilogue entry."""
    x_t, w_t = (tensor(graph, n) for n in op.inputs[:2])
    y = tensor(graph, op.outputs[0])
    cout, c, kh, kw = w_t.shape
    batch, _, oh, ow = y.shape
    m, k = batch * oh * ow, c * kh * kw
    a = Operand(shape=(m, k), tensor=x_t.name, transforms=[{"im2col": im2col_attrs(op, kh, kw, oh, ow)}])
    w = Operand(shape=(k, cout), data=np.asarray(w_t.data, np.float32).reshape(cout, k).T)
    leading = []
    if len(op.inputs) > 2 and op.inputs[2]:
        bias = np.asarray(tensor(graph, op.inputs[2]).data, np.float32).reshape(cout)
        leading.append({"kind": "bias", "op": op.name, "input": "bias", "data": bias.copy()})
    to_gemm = [{"transpose": [0, 2, 3, 1]}, {"reshape": [m, cout]}]
    out = [{"reshape": [batch, oh, ow, cout]}, {"transpose": [0, 3, 1, 2]}]
    gemm_step(b, graph, op, a, w, out, to_gemm, "im2col+gemm", leading=leading)


def lower_conv_grouped(b: ProgramBuilder, graph: ir.Graph, op: ir.Op) -> None:
    """A grouped Conv (1 < group < channels) as G GEMMs of one design: im2col per group [G, M, C/G*kh*kw] @
    [G, C/G*kh*kw, Cout/G]."""
    x_t, w_t = (tensor(graph, n) for n in op.inputs[:2])
    y = tensor(graph, op.outputs[0])
    groups = int(op.attrs["group"])
    cout, cg, kh, kw = w_t.shape
    batch, _, oh, ow = y.shape
    m, k, n = batch * oh * ow, cg * kh * kw, cout // groups
    w = np.asarray(w_t.data, np.float32).reshape(groups, n, k).transpose(0, 2, 1)
    if len(op.inputs) > 2 and op.inputs[2]:  # bias as a ones column of A times a bias row of B, per group
        bias = np.asarray(tensor(graph, op.inputs[2]).data, np.float32).reshape(groups, 1, n)
        w, k = np.concatenate([w, bias], axis=1), k + 1
    im2col = {"im2col": im2col_attrs(op, kh, kw, oh, ow)}
    transforms = [im2col, {"group_columns": groups}] + ([{"append_ones": 1}] if k > cg * kh * kw else [])
    tiling, (mp, kp, np_) = b.timing.gemm_plan((m, k, n), "bf16", "bfloat16", batch=groups, loaded=b.tiling)
    b.tiling = tiling
    padded = (groups, mp, kp, np_)
    buffers = [
        Buffer("A", "bfloat16", (groups, mp, kp)),
        Buffer("B", "bfloat16", (groups, kp, np_)),
        Buffer("C", "bfloat16", (groups, mp, np_)),
    ]
    variant = f"bf16_bf16_{tiling.m}x{tiling.k}x{tiling.n}_{tiling.cols}c"
    build = {"dtype_in": "bf16", "dtype_out": "bf16", "epilogues": EPILOGUES, **tiling.build_args()}
    extra = {"dtype": "bf16", "out_dtype": "bfloat16", "tiling": asdict(tiling), "epilogue": [], "build_args": build}
    operands = [Operand((groups, m, k), tensor=x_t.name, transforms=transforms), Operand((groups, k, n), data=w)]
    output = {
        "tensor": y.name,
        "shape": [groups, m, n],
        "transforms": [{"transpose": [1, 0, 2]}, {"reshape": [batch, oh, ow, cout]}, {"transpose": [0, 3, 1, 2]}],
    }
    b.add_step(op, CONV_GROUPED, padded, buffers, operands, output, "im2col+grouped-gemm", variant, "", extra)


@lowers("Conv", check=all_of(float_reason, check_conv))
def lower_conv(b: ProgramBuilder, graph: ir.Graph, op: ir.Op) -> None:
    groups = int(op.attrs.get("group", 1))
    if groups == 1:
        lower_conv_gemm(b, graph, op)
    elif is_depthwise(graph, op):
        lower_dwconv(b, graph, op)
    else:
        lower_conv_grouped(b, graph, op)


def _int8_operands(op: ir.Op) -> tuple[str, str]:
    return (op.inputs[0], op.inputs[1]) if op.op_type == "MatMulInteger" else (op.inputs[0], op.inputs[3])


def check_int8_matmul(graph: ir.Graph, op: ir.Op) -> str | None:
    a, w = (tensor(graph, n) for n in _int8_operands(op))
    if a.dtype != "int8" or w.dtype != "int8":
        return f"{op.op_type} of {a.dtype} x {w.dtype}: the NPU int8 GEMM takes int8 x int8; run it elsewhere"
    zero_points = op.inputs[2:4] if op.op_type == "MatMulInteger" else [op.inputs[2], op.inputs[5]]
    if len(a.shape) < 2 or len(w.shape) < 2 or math.prod(w.shape[:-2]) != 1:
        return f"{op.op_type} of {list(a.shape)} x {list(w.shape)}: the NPU int8 GEMM takes one B matrix"
    for name in zero_points:
        if name and (not tensor(graph, name).is_constant or np.any(np.asarray(tensor(graph, name).data) != 0)):
            return f"{op.op_type} with a nonzero input zero point: the NPU int8 GEMM is symmetric; run it elsewhere"
    if op.op_type == "QLinearMatMul":
        for name in (op.inputs[1], op.inputs[4], op.inputs[6], op.inputs[7]):
            if not tensor(graph, name).is_constant or math.prod(tensor(graph, name).shape) != 1:
                return f"QLinearMatMul {name} is not a constant scalar: the NPU requantizes per tensor only"
        if tensor(graph, op.outputs[0]).dtype != "int8":
            return "QLinearMatMul to uint8: the NPU int8 GEMM writes int8"
    return None


@lowers("MatMulInteger", "QLinearMatMul", check=check_int8_matmul)
def lower_int8_matmul(b: ProgramBuilder, graph: ir.Graph, op: ir.Op) -> None:
    """int8 x int8 GEMM: int32 out (MatMulInteger), or requantized to int8 (QLinearMatMul, zero input zero points):
    y = saturate(round(acc * a_scale * b_scale / y_scale) + y_zero_point)."""
    names = _int8_operands(op)
    if op.op_type == "MatMulInteger":
        out_dtype, leading = "int32", []
    else:
        out_dtype = "int8"
        scale = math.prod(float(np.asarray(tensor(graph, op.inputs[i]).data).reshape(-1)[0]) for i in (1, 4))
        scale /= float(np.asarray(tensor(graph, op.inputs[6]).data).reshape(-1)[0])
        zero = int(np.asarray(tensor(graph, op.inputs[7]).data).reshape(-1)[0])
        leading = [{"kind": "requantize", "op": op.name, "value": scale, "zero_point": zero}]
    a_t, w_t = (tensor(graph, n) for n in names)
    k, n = w_t.shape[-2:]
    m = math.prod(a_t.shape) // k
    a = operand(graph, a_t.name, [{"reshape": [m, k]}], (m, k), lambda x: x.reshape(m, k))
    w = operand(graph, w_t.name, [{"reshape": [k, n]}], (k, n), lambda x: x.reshape(k, n))
    y = tensor(graph, op.outputs[0])
    gemm_step(b, graph, op, a, w, [{"reshape": list(y.shape)}], [], "int8-gemm", "int8", out_dtype, leading)
