"""Tiny decoders with random weights in the exporter's cache layout (Optimum / torch.onnx.export), built with
onnx.helper: input_ids, attention_mask, position_ids, past_key_values.{i}.key/value in; logits, present.{i}.* out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


@dataclass(frozen=True)
class TinyConfig:
    style: str = "gpt2"  # gpt2: LayerNorm, learned positions, GELU MLP; llama: RMSNorm, rotary, GQA, SwiGLU
    vocab: int = 64
    hidden: int = 32
    heads: int = 4
    kv_heads: int = 4
    layers: int = 2
    max_positions: int = 128
    seed: int = 0
    hf_cache: bool = False  # the TorchScript export of a transformers DynamicCache: each past key through a one-input
    # Concat (torch.cat([empty, past])), and the mask's length counted as past rows + new tokens


class _Builder:
    def __init__(self, seed: int) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.rng = np.random.default_rng(seed)
        self.count = 0

    def op(self, op_type: str, *inputs: str, **attrs) -> str:
        self.count += 1
        out = f"{op_type.lower()}_{self.count}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=f"{op_type}_{self.count}", **attrs))
        return out

    def const(self, value, name: str | None = None) -> str:
        self.count += 1
        name = name or f"c_{self.count}"
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def weight(self, *shape: int, scale: float = 0.2) -> str:
        return self.const((self.rng.standard_normal(shape) * scale).astype(np.float32))


def tiny_decoder(config: TinyConfig) -> onnx.ModelProto:
    """A decoder of `config` with random weights, in the layout exporters write (symbolic batch/sequence dims)."""
    b, c = _Builder(config.seed), config
    head_dim, group = c.hidden // c.heads, c.heads // c.kv_heads
    x = b.op("Gather", b.weight(c.vocab, c.hidden, scale=1.0), "input_ids")
    if c.style == "gpt2":
        x = b.op("Add", x, b.op("Gather", b.weight(c.max_positions, c.hidden), "position_ids"))
    else:
        inv = 1.0 / (10000 ** (np.arange(0, head_dim, 2) / head_dim))
        angles = np.outer(np.arange(c.max_positions), inv).astype(np.float32)
        table = np.concatenate([angles, angles], axis=-1)
        cos = b.op("Unsqueeze", b.op("Gather", b.const(np.cos(table)), "position_ids"), b.const(np.array([1])))
        sin = b.op("Unsqueeze", b.op("Gather", b.const(np.sin(table)), "position_ids"), b.const(np.array([1])))
    pasts = [f"past_key_values.{i}.key" for i in range(c.layers)]
    if c.hf_cache:
        pasts = [b.op("Concat", past, axis=-2) for past in pasts]
    bias = _mask(b, pasts[0] if c.hf_cache else None)
    for i in range(c.layers):
        h = _norm(b, x, c)
        q = _heads(b, b.op("MatMul", h, b.weight(c.hidden, c.hidden)), c.heads, head_dim)
        k = _heads(b, b.op("MatMul", h, b.weight(c.hidden, c.kv_heads * head_dim)), c.kv_heads, head_dim)
        v = _heads(b, b.op("MatMul", h, b.weight(c.hidden, c.kv_heads * head_dim)), c.kv_heads, head_dim)
        if c.style == "llama":
            q, k = _rotary(b, q, cos, sin, head_dim), _rotary(b, k, cos, sin, head_dim)
        b.nodes.append(helper.make_node("Concat", [pasts[i], k], [f"present.{i}.key"], axis=-2))
        b.nodes.append(helper.make_node("Concat", [f"past_key_values.{i}.value", v], [f"present.{i}.value"], axis=2))
        keys, values = _repeat(b, f"present.{i}.key", c, group), _repeat(b, f"present.{i}.value", c, group)
        scores = b.op(
            "Mul", b.op("MatMul", q, b.op("Transpose", keys, perm=[0, 1, 3, 2])), b.const(np.float32(head_dim**-0.5))
        )
        attn = b.op("MatMul", b.op("Softmax", b.op("Add", scores, bias), axis=-1), values)
        attn = b.op("Reshape", b.op("Transpose", attn, perm=[0, 2, 1, 3]), b.const(np.array([0, 0, c.hidden])))
        x = b.op("Add", x, b.op("MatMul", attn, b.weight(c.hidden, c.hidden)))
        h = _norm(b, x, c)
        if c.style == "gpt2":
            up = b.op("MatMul", h, b.weight(c.hidden, 4 * c.hidden))
            act = b.op("Mul", up, b.op("Sigmoid", b.op("Mul", up, b.const(np.float32(1.702)))))
            x = b.op("Add", x, b.op("MatMul", act, b.weight(4 * c.hidden, c.hidden)))
        else:
            gate, up = (
                b.op("MatMul", h, b.weight(c.hidden, 3 * c.hidden)),
                b.op("MatMul", h, b.weight(c.hidden, 3 * c.hidden)),
            )
            act = b.op("Mul", b.op("Mul", gate, b.op("Sigmoid", gate)), up)
            x = b.op("Add", x, b.op("MatMul", act, b.weight(3 * c.hidden, c.hidden)))
    b.nodes.append(helper.make_node("MatMul", [_norm(b, x, c), b.weight(c.hidden, c.vocab, scale=1.0)], ["logits"]))
    return _model(b, c, head_dim)


def _mask(b: _Builder, past: str | None) -> str:
    """Additive mask [B,1,S,T]: causal (query i sees keys up to i + past) and the attention_mask's padding; T is the
    attention_mask's length, or with `past` its rows + the new tokens (as HF's masks count)."""
    seq = b.op("Gather", b.op("Shape", "input_ids"), b.const(np.int64(1)))
    if past:
        total = b.op("Add", b.op("Gather", b.op("Shape", past), b.const(np.int64(2))), seq)
    else:
        total = b.op("Gather", b.op("Shape", "attention_mask"), b.const(np.int64(1)))
    rows = b.op("Add", b.op("Range", b.const(np.int64(0)), seq, b.const(np.int64(1))), b.op("Sub", total, seq))
    cols = b.op("Range", b.const(np.int64(0)), total, b.const(np.int64(1)))
    seen = b.op(
        "LessOrEqual", b.op("Unsqueeze", cols, b.const(np.array([0]))), b.op("Unsqueeze", rows, b.const(np.array([1])))
    )
    valid = b.op("Unsqueeze", b.op("Cast", "attention_mask", to=TensorProto.BOOL), b.const(np.array([1, 2])))
    return b.op("Where", b.op("And", seen, valid), b.const(np.float32(0)), b.const(np.float32(-1e9)))


def _norm(b: _Builder, x: str, c: TinyConfig) -> str:
    scale = b.const((1 + 0.1 * b.rng.standard_normal(c.hidden)).astype(np.float32))
    if c.style == "gpt2":
        return b.op("LayerNormalization", x, scale, b.weight(c.hidden, scale=0.1), axis=-1, epsilon=1e-5)
    mean = b.op("ReduceMean", b.op("Mul", x, x), axes=[-1], keepdims=1)
    return b.op("Mul", b.op("Div", x, b.op("Sqrt", b.op("Add", mean, b.const(np.float32(1e-6))))), scale)


def _heads(b: _Builder, x: str, heads: int, head_dim: int) -> str:
    return b.op("Transpose", b.op("Reshape", x, b.const(np.array([0, 0, heads, head_dim]))), perm=[0, 2, 1, 3])


def _rotary(b: _Builder, x: str, cos: str, sin: str, head_dim: int) -> str:
    half = head_dim // 2
    lo = b.op("Slice", x, b.const(np.array([0])), b.const(np.array([half])), b.const(np.array([-1])))
    hi = b.op("Slice", x, b.const(np.array([half])), b.const(np.array([head_dim])), b.const(np.array([-1])))
    turned = b.op("Concat", b.op("Neg", hi), lo, axis=-1)
    return b.op("Add", b.op("Mul", x, cos), b.op("Mul", turned, sin))


def _repeat(b: _Builder, x: str, c: TinyConfig, group: int) -> str:
    """Grouped-query attention: each key/value head serves `group` query heads."""
    if group == 1:
        return x
    head_dim = c.hidden // c.heads
    wide = b.op("Unsqueeze", x, b.const(np.array([2])))
    wide = b.op(
        "Expand", wide, b.op("Concat", b.const(np.array([1, c.kv_heads, group])), b.op("Shape", x, start=2), axis=0)
    )
    return b.op("Reshape", wide, b.const(np.array([0, c.heads, -1, head_dim])))


def _model(b: _Builder, c: TinyConfig, head_dim: int) -> onnx.ModelProto:
    floats, ints = TensorProto.FLOAT, TensorProto.INT64
    inputs = [
        helper.make_tensor_value_info("input_ids", ints, ["batch", "sequence"]),
        helper.make_tensor_value_info("attention_mask", ints, ["batch", "total"]),
        helper.make_tensor_value_info("position_ids", ints, ["batch", "sequence"]),
    ]
    outputs = [helper.make_tensor_value_info("logits", floats, ["batch", "sequence", c.vocab])]
    for i in range(c.layers):
        for kind in ("key", "value"):
            inputs.append(
                helper.make_tensor_value_info(
                    f"past_key_values.{i}.{kind}", floats, ["batch", c.kv_heads, "past", head_dim]
                )
            )
            outputs.append(
                helper.make_tensor_value_info(f"present.{i}.{kind}", floats, ["batch", c.kv_heads, "total", head_dim])
            )
    graph = helper.make_graph(b.nodes, f"tiny-{c.style}", inputs, outputs, b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def ort_generate(
    model: onnx.ModelProto | str, prompt: np.ndarray, max_new_tokens: int
) -> tuple[list[int], list[np.ndarray]]:
    """The reference: onnxruntime running the exported model with its own Concat cache loop, greedy. Returns the
    tokens and the logits of every step (the prompt's last position, then each new token)."""
    import onnxruntime as ort

    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    pasts = [i for i in session.get_inputs() if i.name.startswith("past_key_values.")]
    names = {i.name for i in session.get_inputs()}
    feeds = {p.name: np.zeros([1, p.shape[1], 0, p.shape[3]], np.float32) for p in pasts}
    ids, tokens, steps = np.asarray(prompt, np.int64).reshape(1, -1), [], []
    start = 0
    for _ in range(max_new_tokens):
        total = start + ids.shape[1]
        feeds |= {"input_ids": ids, "attention_mask": np.ones((1, total), np.int64)}
        if "position_ids" in names:
            feeds["position_ids"] = np.arange(start, total, dtype=np.int64).reshape(1, -1)
        out = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))
        logits = out["logits"][0, -1]
        steps.append(logits)
        tokens.append(int(np.argmax(logits)))
        feeds |= {p.name: out[p.name.replace("past_key_values", "present")] for p in pasts}
        ids, start = np.array([[tokens[-1]]], np.int64), total
    return tokens, steps
