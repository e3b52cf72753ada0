"""Lowerings of onnxruntime's attention-family contrib ops (Attention, MultiHeadAttention, GroupQueryAttention,
RotaryEmbedding) to standard ops: the matmul / scale / mask / Softmax / matmul pattern the GPU fuses into one
dispatch (codegen/gpu/attention_fuse.py), with onnxruntime's masking (mask_filter_value added, not -inf)."""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from ragc.frontend.contrib_builder import NodeBuilder, lowers

INT_MAX = np.iinfo(np.int64).max
FLOAT_MIN = float(np.finfo(np.float32).min)


def _i64(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


def heads(b: NodeBuilder, x: gs.Tensor, count: int) -> gs.Variable:
    """(B, S, count * H) -> (B, count, S, H)."""
    return b.op("Transpose", [b.op("Reshape", [x, _i64(0, 0, count, -1)])], perm=[0, 2, 1, 3])


def merge_heads(b: NodeBuilder, x: gs.Tensor, out: gs.Variable | None) -> None:
    """(B, N, S, H) -> (B, S, N * H)."""
    b.op("Reshape", [b.op("Transpose", [x], perm=[0, 2, 1, 3]), _i64(0, 0, -1)], out)


def _last_dims(b: NodeBuilder, x: gs.Tensor, count: int) -> gs.Variable:
    return b.op("Slice", [b.op("Shape", [x]), _i64(-count), _i64(INT_MAX)])


def default_scale(b: NodeBuilder, q: gs.Tensor) -> gs.Variable:
    """1 / sqrt(head size) of a (B, N, S, H) query, computed in the graph (folded once shapes are static)."""
    size = b.op("Cast", [_last_dims(b, q, 1)], to=1)
    return b.op("Reciprocal", [b.op("Sqrt", [size])])


def causal_bias(b: NodeBuilder, scores: gs.Tensor, value: float) -> gs.Variable:
    """(S, L): `value` where key j > query i, else 0."""
    ones = b.op("Expand", [np.float32(1.0), _last_dims(b, scores, 2)])
    upper = b.op("Cast", [b.op("Trilu", [ones, _i64(1)], upper=1)], to=9)
    return b.op("Where", [upper, value, 0.0])


def key_mask_bias(b: NodeBuilder, mask: gs.Tensor, value: float) -> gs.Variable:
    """onnxruntime's mask semantics as an additive bias: 0 where mask > 0, `value` elsewhere; a (B, L) mask becomes
    (B, 1, 1, L), a (B, S, L) one (B, 1, S, L)."""
    bias = b.op("Where", [b.op("Greater", [b.op("Cast", [mask], to=1), 0.0]), 0.0, value])
    rank = len(mask.shape) if mask.shape is not None else 2
    return b.op("Unsqueeze", [bias, _i64(1, 2) if rank == 2 else _i64(1)])


def length_mask_bias(b: NodeBuilder, lengths: gs.Tensor, scores: gs.Tensor, value: float) -> gs.Variable:
    """A (B) right-padding length per batch as a (B, 1, 1, L) bias: `value` at keys j >= length."""
    keys = b.op("Range", [np.int64(0), b.op("Squeeze", [_last_dims(b, scores, 1), _i64(0)]), np.int64(1)])
    valid = b.op(
        "Less", [b.op("Unsqueeze", [keys, _i64(0)]), b.op("Unsqueeze", [b.op("Cast", [lengths], to=7), _i64(1)])]
    )
    return b.op("Unsqueeze", [b.op("Where", [valid, 0.0, value]), _i64(1, 2)])


def attend(
    b: NodeBuilder, q: gs.Tensor, k: gs.Tensor, v: gs.Tensor, scale, biases: list, softcap: float = 0.0
) -> gs.Variable:
    """softmax(scale * q k^T (softcapped) + biases) v over (B, N, S, H) operands."""
    scores = b.op("Mul", [b.op("MatMul", [q, b.op("Transpose", [k], perm=[0, 1, 3, 2])]), scale])
    if softcap:
        scores = b.op("Mul", [b.op("Tanh", [b.op("Div", [scores, float(softcap)])]), float(softcap)])
    for bias in biases:
        scores = b.op("Add", [scores, bias(scores) if callable(bias) else bias])
    return b.op("MatMul", [b.op("Softmax", [scores], axis=-1), v])


def _present(b: NodeBuilder, index: int, value: gs.Tensor) -> None:
    out = b.output(index)
    if out is not None:
        b.op("Identity", [value], out)


@lowers("Attention")
def _attention(b: NodeBuilder) -> None:
    for index, what in ((4, "a past state"), (6, "past_sequence_length")):
        if b.input(index) is not None:
            raise b.refuse(what)
    if b.attr("do_rotary", 0):
        raise b.refuse("do_rotary")
    weights = b.input(1)
    n = b.attr("num_heads", 1)
    sizes = list(b.attr("qkv_hidden_sizes", [])) or [int(weights.shape[1]) // 3] * 3
    qkv = b.op("MatMul", [b.input(0), weights])
    if b.input(2) is not None:
        qkv = b.op("Add", [qkv, b.input(2)])
    parts = [gs.Variable(f"{b.prefix}/{name}") for name in "qkv"]
    b.op_multi("Split", [qkv, _i64(*sizes)], parts, axis=-1)
    q, k, v = (heads(b, t, n) for t in parts)
    scale = b.attr("scale", 0.0) or float(1.0 / np.sqrt(sizes[0] // n))
    fill = float(b.attr("mask_filter_value", -10000.0))
    biases = _mask_biases(b, b.input(3), fill)
    if b.attr("unidirectional", 0):
        biases.append(lambda scores: causal_bias(b, scores, fill))
    if b.input(5) is not None:
        biases.insert(0, b.input(5))
    merge_heads(b, attend(b, q, k, v, scale, biases), b.output(0))
    if b.output(1) is not None:
        stacked = [b.op("Unsqueeze", [t, _i64(0)]) for t in (k, v)]
        b.op("Concat", stacked, b.output(1), axis=0)


def _mask_biases(b: NodeBuilder, mask: gs.Tensor | None, fill: float) -> list:
    if mask is None:
        return []
    rank = len(mask.shape) if mask.shape is not None else None
    if rank in (2, 3):
        return [key_mask_bias(b, mask, fill)]
    if rank == 1 and mask.shape[0] != 0:
        return [lambda scores: length_mask_bias(b, mask, scores, fill)]
    raise b.refuse(f"a mask of rank {rank} (only (B, L) / (B, S, L) masks or (B) lengths)")


@lowers("MultiHeadAttention")
def _multi_head_attention(b: NodeBuilder) -> None:
    for index, what in ((6, "past_key"), (7, "past_value"), (8, "past_sequence_length"), (9, "cache_indirection")):
        if b.input(index) is not None:
            raise b.refuse(what)
    if b.output(3) is not None:
        raise b.refuse("the qk output")
    query, key, value = b.input(0), b.input(1), b.input(2)
    if key is None or (query.shape is not None and len(query.shape) != 3):
        raise b.refuse("packed QKV / KV inputs")
    n = b.attr("num_heads", 1)
    if b.input(3) is not None:
        parts = [gs.Variable(f"{b.prefix}/bias_{name}") for name in "qkv"]
        b.op_multi("Split", [b.input(3), _i64(*[int(b.input(3).shape[0]) // 3] * 3)], parts, axis=0)
        query, key, value = (b.op("Add", [x, bias]) for x, bias in zip((query, key, value), parts, strict=True))
    four_d = key.shape is not None and len(key.shape) == 4
    q = heads(b, query, n)
    k, v = (key, value) if four_d else (heads(b, key, n), heads(b, value, n))
    fill = float(b.attr("mask_filter_value", -10000.0))
    biases = _mask_biases(b, b.input(4), fill)
    if b.input(5) is not None:
        biases.insert(0, b.input(5))
    if b.attr("unidirectional", 0):
        biases.append(lambda scores: causal_bias(b, scores, fill))
    scale = b.attr("scale", 0.0) or default_scale(b, q)
    merge_heads(b, attend(b, q, k, v, scale, biases), b.output(0))
    _present(b, 1, k)
    _present(b, 2, v)


def rotate(
    b: NodeBuilder,
    x: gs.Tensor,
    cos: gs.Tensor,
    sin: gs.Tensor,
    rot: int,
    interleaved: bool,
    out: gs.Variable | None = None,
) -> gs.Variable:
    """Rotary embedding of the first `rot` elements of the last axis of a 4-D x; cos and sin broadcast against
    x's halves. The rest of the axis is appended as is (drop_empty_concat_inputs removes it when empty)."""
    half = rot // 2

    def part(start: int, end: int, step: int = 1) -> gs.Variable:
        return b.op("Slice", [x, _i64(start), _i64(end), _i64(-1), _i64(step)])

    x1, x2 = (part(0, rot, 2), part(1, rot, 2)) if interleaved else (part(0, half), part(half, rot))
    real = b.op("Sub", [b.op("Mul", [x1, cos]), b.op("Mul", [x2, sin])])
    imag = b.op("Add", [b.op("Mul", [x1, sin]), b.op("Mul", [x2, cos])])
    if interleaved:  # (..., half, 2) back to (..., rot); x is 4-D
        pairs = b.op("Concat", [b.op("Unsqueeze", [t, _i64(-1)]) for t in (real, imag)], axis=-1)
        rotated = [b.op("Reshape", [pairs, _i64(0, 0, 0, -1)])]
    else:
        rotated = [real, imag]
    return b.op("Concat", [*rotated, part(rot, INT_MAX)], out, axis=-1)


def positions_from_offset(b: NodeBuilder, x: gs.Tensor, offset: gs.Tensor | None, seq_axis: int) -> gs.Variable:
    """(1, S) positions offset + 0 .. S - 1 along `seq_axis` of x."""
    seq = b.op("Squeeze", [b.op("Slice", [b.op("Shape", [x]), _i64(seq_axis), _i64(seq_axis + 1)]), _i64(0)])
    positions = b.op("Range", [np.int64(0), seq, np.int64(1)])
    if offset is not None:
        positions = b.op("Add", [positions, b.op("Cast", [b.op("Reshape", [offset, _i64(-1)])], to=7)])
    return b.op("Unsqueeze", [positions, _i64(0)])


def rotary_caches(
    b: NodeBuilder, cos_cache: gs.Tensor, sin_cache: gs.Tensor, positions: gs.Tensor, head_axis: int
) -> tuple[gs.Variable, gs.Variable]:
    """The caches' rows at `positions` (B, S), with a size-1 axis inserted where x has its heads."""
    return tuple(
        b.op("Unsqueeze", [b.op("Gather", [c, positions], axis=0), _i64(head_axis)]) for c in (cos_cache, sin_cache)
    )


@lowers("RotaryEmbedding")
def _rotary_embedding(b: NodeBuilder) -> None:
    if b.attr("is_packed_batching", 0) or b.attr("scale", 1.0) != 1.0:
        raise b.refuse("packed batching or scale")
    x, position_ids, cos_cache, sin_cache = (b.input(i) for i in range(4))
    half = int(cos_cache.shape[1])
    rot = b.attr("rotary_embedding_dim", 0) or 2 * half
    four_d = x.shape is not None and len(x.shape) == 4  # (B, N, S, H), else (B, S, N * H)
    if position_ids.shape is not None and len(position_ids.shape) == 1:
        position_ids = positions_from_offset(b, x, position_ids, 2 if four_d else 1)
    cos, sin = rotary_caches(b, cos_cache, sin_cache, position_ids, 1 if four_d else 2)
    if four_d:
        rotate(b, x, cos, sin, rot, bool(b.attr("interleaved", 0)), b.output(0))
        return
    n = b.attr("num_heads", 0) or None
    split = b.op("Reshape", [x, _i64(0, 0, n, -1) if n else _i64(0, 0, -1, rot)])
    rotated = rotate(b, split, cos, sin, rot, bool(b.attr("interleaved", 0)))
    b.op("Reshape", [rotated, _i64(0, 0, -1)], b.output(0))


@lowers("GroupQueryAttention")
def _group_query_attention(b: NodeBuilder) -> None:
    for index, what in ((3, "past_key"), (4, "past_value"), (10, "attention_bias"), (11, "head_sink")):
        if b.input(index) is not None:
            raise b.refuse(what)
    if any(b.input(i) is not None for i in range(12, 17)) or b.output(3) is not None:
        raise b.refuse("quantized caches, q/k norms, query_seqlens or the qk output")
    if b.attr("local_window_size", -1) != -1 or b.attr("smooth_softmax", 0):
        raise b.refuse("local_window_size or smooth_softmax")
    n, kv_n = b.attr("num_heads", 1), b.attr("kv_num_heads", 1)
    query, key, value = b.input(0), b.input(1), b.input(2)
    if key is None:
        raise b.refuse("packed QKV")
    q, k, v = (b.op("Reshape", [t, _i64(0, 0, heads_, -1)]) for t, heads_ in ((query, n), (key, kv_n), (value, kv_n)))
    if b.attr("do_rotary", 0):
        positions = b.input(9) if b.input(9) is not None else positions_from_offset(b, query, None, 1)
        cos, sin = rotary_caches(b, b.input(7), b.input(8), positions, 2)
        rot = 2 * int(b.input(7).shape[1])
        q, k = (rotate(b, t, cos, sin, rot, bool(b.attr("rotary_interleaved", 0))) for t in (q, k))
    repeat = _i64(1, 1, 1, n // kv_n, 1)
    k_all, v_all = (
        b.op(
            "Transpose",
            [b.op("Reshape", [b.op("Expand", [b.op("Unsqueeze", [t, _i64(3)]), repeat]), _i64(0, 0, n, -1)])],
            perm=[0, 2, 1, 3],
        )
        for t in (k, v)
    )
    q = b.op("Transpose", [q], perm=[0, 2, 1, 3])
    scale = b.attr("scale", 0.0) or default_scale(b, q)
    biases = [lambda scores: causal_bias(b, scores, float("-inf"))]
    merge_heads(b, attend(b, q, k_all, v_all, scale, biases, b.attr("softcap", 0.0)), b.output(0))
    _present(b, 1, b.op("Transpose", [k], perm=[0, 2, 1, 3]))
    _present(b, 2, b.op("Transpose", [v], perm=[0, 2, 1, 3]))
