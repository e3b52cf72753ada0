"""Attention on the GPU: the opset-23 Attention and RotaryEmbedding ops, each one dispatch.

`attention_dispatch` builds templates/attention.comp.j2 from a description of the operands; the ONNX op lowers
through it here, and the pattern the exporters write (MatMul, scale, mask, Softmax, guard, MatMul) through it in
codegen/gpu/attention_fuse.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from codegen.gpu.lowering import (
    Dispatch,
    attr,
    broadcast_strides,
    float_literal,
    fp32_reason,
    grid,
    lowers,
    numel,
)
from ragc.ir import Graph, Op

MAX_KV = 3072  # keys per query row: a row's scores stay in shared memory with its Q and a chunk of K or V
MAX_HEAD = 256
LOCAL = 128
SHARED_FLOATS = 8000  # under the 32 KiB of shared memory every Vulkan device has (lavapipe's limit)
TARGET_GROUPS = 144  # a few more workgroups than a large GPU's SMs (an H200 has 132): see docs/benchmarks.md


@dataclass(frozen=True)
class Rotary:
    """HF's rotary embedding applied as an operand is read: x * cos + rotate_half(x) * sin along the head element
    (rotate_half(x)[d] = -x[d + D/2] below D/2, else x[d - D/2]); cos and sin read by strides over (batch, head,
    row, element), 0 where they broadcast."""

    cos: str
    sin: str
    cos_strides: tuple[int, int, int, int]
    sin_strides: tuple[int, int, int, int]


@dataclass(frozen=True)
class Operand:
    """A Q, K, V or Y tensor seen as (batch, heads, rows, head size): its strides for batch, head, row and head
    element (`step`), its sizes, and the element `offset` of [0, 0, 0, 0] (codegen/gpu/views.py reads an operand
    inside a larger tensor)."""

    name: str
    batch_stride: int
    head_stride: int
    row_stride: int
    heads: int
    rows: int
    size: int
    step: int = 1
    offset: int = 0
    rotary: Rotary | None = None
    batch: int = 1


def operand(graph: Graph, name: str, heads: int | None = None) -> Operand:
    """A 4-D (B, H, S, D) tensor, or a 3-D (B, S, H * D) one split into `heads`."""
    shape = graph.tensors[name].shape
    if len(shape) == 4:
        b, h, s, d = shape
        return Operand(name, h * s * d, s * d, d, h, s, d, batch=b)
    b, s, hidden = shape
    return Operand(name, s * hidden, hidden // heads, hidden, heads, s, hidden // heads, batch=b)


MASKED_ROWS = ("zero", "guard", "keep")  # ONNX Attention; Where(IsNaN(p), 0, p) after Softmax; a plain Softmax


@dataclass(frozen=True)
class AttentionSpec:
    batch: int
    q: Operand
    k: Operand
    v: Operand
    out: Operand
    scale: float
    causal: bool = False
    mask: str = ""  # a bool (True: attend) or float (added) tensor broadcast to (B, Hq, Sq, Skv)
    softcap: float = 0.0
    masked_rows: str = "zero"  # a row whose bias masks every key: 0 (ONNX); "guard": every NaN p is 0; "keep"


def spec_reason(spec: AttentionSpec) -> str | None:
    if spec.k.rows > MAX_KV:
        return f"{spec.k.rows} keys exceed the {MAX_KV} of the one-dispatch attention kernel"
    if max(spec.q.size, spec.v.size) > MAX_HEAD:
        return f"head size {max(spec.q.size, spec.v.size)} exceeds {MAX_HEAD}"
    if spec.q.heads % spec.k.heads or spec.k.heads != spec.v.heads:
        return f"{spec.q.heads} query heads do not group over {spec.k.heads} key/value heads"
    return None


def _mask_strides(graph: Graph, mask: str) -> list[int]:
    """Strides of the mask over (batch, head, query, key), 0 along the dimensions it broadcasts."""
    return broadcast_strides(graph.tensors[mask].shape, 4)


CHUNKS = (128, 64, 32, 16, 8)  # keys per chunk, longest first
ROWS = (32, 16, 8, 4, 2, 1)


@dataclass(frozen=True)
class Blocking:
    """How templates/attention.comp.j2 divides one workgroup's work (its docstring names the letters)."""

    rows: int  # R
    chunk: int  # CH
    key_lanes: int  # KG
    row_tiles: int  # TR
    key_slices: int  # KS
    value_rows: int  # TV
    shared_vec4s: int  # KVN


def tiling(spec: AttentionSpec, rows: int, chunk: int) -> Blocking:
    d4, dv4 = -(-spec.q.size // 4), -(-spec.v.size // 4)
    key_lanes = min(32, chunk)
    slots = LOCAL // dv4
    slices = max(1, slots // rows)  # 1 once the rows fill the slots
    shared = max(d4 * (chunk + 1), chunk * dv4, slices * rows * dv4)
    return Blocking(rows, chunk, key_lanes, -(-rows // (LOCAL // key_lanes)), slices, -(-rows // slots), shared)


def score_stride(spec: AttentionSpec) -> int:
    return spec.k.rows | 1  # odd: rows of scores start in different banks


def shared_floats(rows: int, chunk: int, spec: AttentionSpec) -> int:
    """Q rows, the K/V chunk (or the partial sums), the rows' scores, the reductions and flags."""
    d4 = -(-spec.q.size // 4)
    return 4 * rows * d4 + 4 * tiling(spec, rows, chunk).shared_vec4s + rows * score_stride(spec) + LOCAL + rows


def blocking(spec: AttentionSpec) -> tuple[int, int]:
    """(R query rows per workgroup, CH keys per chunk): the most rows that still launch TARGET_GROUPS workgroups
    (each K and V row read serves R queries), then the longest chunk; both within SHARED_FLOATS."""
    heads = spec.batch * spec.q.heads
    fits = [r for r in ROWS if shared_floats(r, CHUNKS[-1], spec) <= SHARED_FLOATS and r <= max(spec.q.rows, 1)]
    rows = next((r for r in fits if heads * -(-spec.q.rows // r) >= TARGET_GROUPS), fits[-1])
    return rows, chunk_for(spec, rows)


def chunk_for(spec: AttentionSpec, rows: int) -> int:
    """The longest chunk of keys that fits SHARED_FLOATS beside `rows` query rows."""
    return next((c for c in CHUNKS if shared_floats(rows, c, spec) <= SHARED_FLOATS), CHUNKS[-1])


def attention_dispatch(graph: Graph, spec: AttentionSpec) -> Dispatch:
    rows, chunk = blocking(spec)
    tile = tiling(spec, rows, chunk)
    groups = spec.batch * spec.q.heads * -(-spec.q.rows // rows)
    mask_type = "uint8_t" if spec.mask and graph.tensors[spec.mask].dtype == "bool" else "float"
    params = {
        "local": LOCAL,
        "R": rows,
        "CH": chunk,
        "KG": tile.key_lanes,
        "TR": tile.row_tiles,
        "KS": tile.key_slices,
        "TV": tile.value_rows,
        "KVN": tile.shared_vec4s,
        "PS": score_stride(spec),
        "groups": groups,
        "SQ": spec.q.rows,
        "SKV": spec.k.rows,
        "HQ": spec.q.heads,
        "D": spec.q.size,
        "DV": spec.v.size,
        "group": spec.q.heads // spec.k.heads,
        **{
            f"{t}_s": [x.batch_stride, x.head_stride, x.row_stride, x.step, x.offset]
            for t, x in zip("qkvo", (spec.q, spec.k, spec.v, spec.out), strict=True)
        },
        "scale": float_literal(spec.scale),
        "softcap": float_literal(spec.softcap) if spec.softcap else "",
        "causal": spec.causal,
        "mask_kind": ("bool" if mask_type == "uint8_t" else "float") if spec.mask else "",
        "mask_type": mask_type,
        "m_s": _mask_strides(graph, spec.mask) if spec.mask else [],
        "masked_rows": spec.masked_rows,
        "rot_binding": 5 if spec.mask else 4,
        **{f"{t}_rot": _rotary_strides(x.rotary) for t, x in (("q", spec.q), ("k", spec.k))},
    }
    rotations = [n for x in (spec.q, spec.k) if x.rotary for n in (x.rotary.cos, x.rotary.sin)]
    buffers = (spec.out.name, spec.q.name, spec.k.name, spec.v.name, *([spec.mask] if spec.mask else []), *rotations)
    return Dispatch("attention.comp.j2", params, buffers, grid(groups * LOCAL, LOCAL))


def _rotary_strides(rotary: Rotary | None) -> list[int]:
    """cos's then sin's strides for the template; empty without a rotation."""
    return [*rotary.cos_strides, *rotary.sin_strides] if rotary else []


def onnx_attention_spec(graph: Graph, op: Op) -> AttentionSpec:
    q_heads, kv_heads = attr(op, "q_num_heads", 0) or None, attr(op, "kv_num_heads", 0) or None
    q = operand(graph, op.inputs[0], q_heads)
    k, v = operand(graph, op.inputs[1], kv_heads), operand(graph, op.inputs[2], kv_heads)
    mask = op.inputs[3] if len(op.inputs) > 3 else ""
    return AttentionSpec(
        batch=graph.tensors[op.inputs[0]].shape[0],
        q=q,
        k=k,
        v=v,
        out=operand(graph, op.outputs[0], q_heads),
        scale=attr(op, "scale", 1.0 / math.sqrt(q.size)),
        causal=bool(attr(op, "is_causal", 0)),
        mask=mask,
        softcap=float(attr(op, "softcap", 0.0)),
    )


def _attention_reason(graph: Graph, op: Op) -> str | None:
    if any(op.inputs[4:]) or any(op.outputs[1:]):
        return "Attention with a KV cache (past/present/nonpad lengths) or the QK output runs on the CPU"
    if attr(op, "left_window_size", -1) != -1 or attr(op, "right_window_size", -1) != -1:
        return "sliding-window Attention runs on the CPU"
    reason = fp32_reason(graph, Op(op.name, op.op_type, op.inputs[:3], op.outputs[:1]))
    if reason:
        return reason
    if len(graph.tensors[op.inputs[0]].shape) == 3 and not (attr(op, "q_num_heads", 0) and attr(op, "kv_num_heads", 0)):
        return "3-D Attention needs q_num_heads and kv_num_heads"
    spec = onnx_attention_spec(graph, op)
    if spec.mask:
        m = graph.tensors[spec.mask]
        if m.dtype not in ("bool", "float32") or m.shape[-1] != spec.k.rows or len(m.shape) > 4:
            return f"attention mask {m.name} {m.dtype}{m.shape} is not a bool/float32 mask over all {spec.k.rows} keys"
    return spec_reason(spec)


@lowers("Attention", check=_attention_reason)
def lower_attention(graph: Graph, op: Op) -> list[Dispatch]:
    return [attention_dispatch(graph, onnx_attention_spec(graph, op))]


def _rotary_reason(graph: Graph, op: Op) -> str | None:
    reason = fp32_reason(graph, Op(op.name, op.op_type, op.inputs[:3], op.outputs))
    if reason:
        return reason
    if len(op.inputs) > 3 and op.inputs[3] and graph.tensors[op.inputs[3]].dtype not in ("int64", "int32"):
        return "position ids must be int64 or int32"
    x = graph.tensors[op.inputs[0]].shape
    if len(x) == 3 and not attr(op, "num_heads", 0):
        return "3-D RotaryEmbedding needs num_heads"
    return None


@lowers("RotaryEmbedding", check=_rotary_reason)
def lower_rotary(graph: Graph, op: Op) -> list[Dispatch]:
    x = graph.tensors[op.inputs[0]].shape
    heads_first = len(x) == 4
    b, h, s, dh = x if heads_first else (x[0], attr(op, "num_heads", 1), x[1], x[2] // attr(op, "num_heads", 1))
    positions = op.inputs[3] if len(op.inputs) > 3 else ""
    cos = graph.tensors[op.inputs[1]].shape
    params = {
        "count": numel(x),
        "DH": dh,
        "S": s,
        "H": h,
        "heads_first": heads_first,
        "rot": attr(op, "rotary_embedding_dim", 0) or dh,
        "interleaved": bool(attr(op, "interleaved", 0)),
        "positions": {"int64": "int64_t", "int32": "int"}[graph.tensors[positions].dtype] if positions else "",
        "max_pos": cos[0],
        "batched_cache": not positions and len(cos) == 3 and cos[0] > 1,
    }
    buffers = (op.outputs[0], *op.inputs[:3], *([positions] if positions else []))
    return [Dispatch("rotary.comp.j2", params, buffers, grid(params["count"]))]
