"""Front-end rewrites of a decoder exported with a cache (past_key_values.{i}.key/value in, present.{i}.* out, grown
by Concat along the sequence axis) into its two fixed-shape phases: prefill (no past: the cache's first rows) and
decode (one token written into a fixed-capacity cache by ScatterND at `cache_position`, the attention mask covering
the valid rows)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from ragc.errors import ModelError, UsageError

PAST, PRESENT = "past_key_values.", "present."
CACHE_POSITION = "cache_position"  # decode input: int64 [1], the cache row the new token's key/value go to
LAST_POSITION = "last_position"  # prefill input: int64 [1], the prompt's last row, the one whose logits come out
LOGITS = "logits"


@dataclass(frozen=True)
class CacheLayout:
    """The cache inputs of an exported decoder: past input -> (Concat node index, the new rows' tensor)."""

    concats: dict[str, tuple[int, str]]
    heads: dict[str, int]  # past input -> its number of key/value heads
    head_dim: dict[str, int]
    has_positions: bool


def without_cache_aliases(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with every Identity or one-input Concat of a past input dropped and its readers reading the past
    itself (torch's TorchScript exporter writes `torch.cat([empty, past])` of a transformers DynamicCache so)."""
    pasts = {i.name for i in model.graph.input if i.name.startswith(PAST)}
    outputs = {o.name for o in model.graph.output}
    alias: dict[str, str] = {}
    kept = []
    for node in model.graph.node:
        source = alias.get(node.input[0], node.input[0]) if node.input else ""
        one_input = node.op_type == "Identity" or (node.op_type == "Concat" and len(node.input) == 1)
        if one_input and source in pasts and node.output[0] not in outputs:
            alias[node.output[0]] = source
            continue
        kept.append(node)
    if not alias:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(kept)
    for node in out.graph.node:
        node.input[:] = [alias.get(name, name) for name in node.input]
    return out


def cache_layout(model: onnx.ModelProto) -> CacheLayout:
    """Find every past input and the Concat that grows it; a model without them is refused in one line."""
    inputs = {i.name: i for i in model.graph.input}
    pasts = [name for name in inputs if name.startswith(PAST)]
    missing = [name for name in ("input_ids", "attention_mask") if name not in inputs]
    if not pasts or missing:
        what = ", ".join(missing) if missing else "past_key_values.{i}.key/value inputs"
        raise ModelError(
            f"not a decoder with a KV cache: no {what}; export it with its cache (optimum-cli export onnx --task "
            "text-generation-with-past, or torch.onnx.export with past_key_values)"
        )
    concats, heads, head_dim = {}, {}, {}
    for index, node in enumerate(model.graph.node):
        if node.op_type == "Concat" and len(node.input) == 2 and node.input[0] in pasts:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            if axis not in (2, -2):
                raise ModelError(f"Concat {node.name!r} grows {node.input[0]} along axis {axis}, not 2 (the sequence)")
            concats[node.input[0]] = (index, node.input[1])
    lost = sorted(set(pasts) - set(concats))
    if lost:
        raise ModelError(f"no Concat(past, new, axis=2) grows {lost[0]}; only exporter-style caches are supported")
    for name in pasts:
        dims = inputs[name].type.tensor_type.shape.dim
        if len(dims) != 4 or not (dims[1].dim_value and dims[3].dim_value):
            raise ModelError(f"{name} is not [batch, heads, past, head_dim] with static heads and head_dim")
        heads[name], head_dim[name] = dims[1].dim_value, dims[3].dim_value
    return CacheLayout(concats, heads, head_dim, "position_ids" in inputs)


def prefill_model(model: onnx.ModelProto, layout: CacheLayout, length: int) -> onnx.ModelProto:
    """Prefill: `length` tokens (a shorter prompt is padded on the right, masked), no past; present = new rows."""
    out = _copy(model)
    for past, (index, new) in layout.concats.items():
        node = out.graph.node[index]
        node.op_type, node.input[:] = "Identity", [new]
        del node.attribute[:]
        zeros = np.zeros((1, layout.heads[past], 0, layout.head_dim[past]), np.float32)
        out.graph.initializer.append(numpy_helper.from_array(zeros, past))  # what Shape(past) still reads: 0 rows
    _set_inputs(out, {"input_ids": [1, length], "attention_mask": [1, length], "position_ids": [1, length]})
    _drop_inputs(out, set(layout.concats))
    _last_row_only(out)
    return out


def _last_row_only(model: onnx.ModelProto) -> None:
    """Prefill's logits for the prompt's last row only ([1, 1, vocab], the row `last_position` names): the row is
    picked before the LM head where that is a MatMul by a 2-D weight (each row's logits need only its own row), else
    from the logits. The other rows' logits are never used, and at [1, P, vocab] they are most of what prefill moves."""
    model.graph.input.append(onnx.helper.make_tensor_value_info(LAST_POSITION, onnx.TensorProto.INT64, [1]))
    nodes = list(model.graph.node)
    at, head = next((k, n) for k, n in enumerate(nodes) if LOGITS in n.output)
    if head.op_type == "MatMul" and _is_2d_weight(model, head.input[1]):
        row = f"{head.input[0]}_last_row"
        nodes.insert(at, onnx.helper.make_node("Gather", [head.input[0], LAST_POSITION], [row], axis=1))
        head.input[0] = row
    else:
        head.output[list(head.output).index(LOGITS)] = f"{LOGITS}_every_row"
        nodes.insert(at + 1, onnx.helper.make_node("Gather", [f"{LOGITS}_every_row", LAST_POSITION], [LOGITS], axis=1))
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def decode_model(model: onnx.ModelProto, layout: CacheLayout, capacity: int) -> onnx.ModelProto:
    """Decode: one token; each past input becomes the fixed-capacity cache [1, heads, capacity, head_dim] and its
    Concat a ScatterND writing the new row at `cache_position`; present is the updated cache."""
    out = _copy(model)
    out.graph.input.append(onnx.helper.make_tensor_value_info(CACHE_POSITION, onnx.TensorProto.INT64, [1]))
    made: set[int] = set()
    index_nodes: list[onnx.NodeProto] = []
    for past, (index, new) in layout.concats.items():
        heads = layout.heads[past]
        rows = f"cache_rows_{heads}"
        if heads not in made:
            made.add(heads)
            base = np.stack(np.meshgrid([0], np.arange(heads), [0], indexing="ij"), axis=-1).astype(np.int64)
            out.graph.initializer.append(numpy_helper.from_array(base, f"{rows}_base"))
            out.graph.initializer.append(numpy_helper.from_array(np.array([0, 0, 1], np.int64), f"{rows}_axis"))
            index_nodes.append(onnx.helper.make_node("Mul", [CACHE_POSITION, f"{rows}_axis"], [f"{rows}_step"]))
            index_nodes.append(onnx.helper.make_node("Add", [f"{rows}_base", f"{rows}_step"], [rows]))
        node = out.graph.node[index]
        node.op_type, node.input[:] = "ScatterND", [past, rows, new]
        del node.attribute[:]
        _set_inputs(out, {past: [1, heads, capacity, layout.head_dim[past]]})
        _seen_shape(out, past, [1, heads, capacity - 1, layout.head_dim[past]])
    _set_inputs(out, {"input_ids": [1, 1], "attention_mask": [1, capacity], "position_ids": [1, 1]})
    nodes = index_nodes + list(out.graph.node)  # the row indices first: they read only an input and constants
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


def _seen_shape(model: onnx.ModelProto, past: str, shape: list[int]) -> None:
    """Every Shape(past) becomes the constant `shape`: a model that counts the tokens before this one from its past
    (HF exports: past length + 1 = the mask's length) sees capacity - 1 of them, one row left for the new token."""
    for node in model.graph.node:
        if node.op_type == "Shape" and node.input[0] == past:
            attrs = {a.name: a.i for a in node.attribute}
            part = shape[attrs.get("start", 0) : attrs.get("end", len(shape))]  # ONNX clamps as a Python slice
            node.op_type, node.input[:] = "Constant", []
            del node.attribute[:]
            node.attribute.append(
                onnx.helper.make_attribute("value", numpy_helper.from_array(np.array(part, np.int64)))
            )


def check_capacity(max_context: int, prefill: int) -> None:
    if max_context < 2 or not 1 <= prefill <= max_context:
        raise UsageError(
            f"bad --max-context {max_context} / --prefill {prefill}: need 1 <= prefill <= max-context, >= 2"
        )


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.value_info[:]  # the exporter's symbolic intermediate shapes no longer hold
    for output in out.graph.output:
        for k, dim in enumerate(output.type.tensor_type.shape.dim):
            dim.dim_param = f"{output.name}_{k}"
    return out


def _set_inputs(model: onnx.ModelProto, shapes: dict[str, list[int]]) -> None:
    for value in model.graph.input:
        if value.name in shapes:
            dims = value.type.tensor_type.shape.dim
            del dims[:]
            for size in shapes[value.name]:
                dims.add().dim_value = size


def _drop_inputs(model: onnx.ModelProto, names: set[str]) -> None:
    kept = [value for value in model.graph.input if value.name not in names]
    del model.graph.input[:]
    model.graph.input.extend(kept)


def _is_2d_weight(model: onnx.ModelProto, name: str) -> bool:
    """An initializer of rank 2, or the Transpose of one (a tied embedding)."""
    weights = {w.name: w for w in model.graph.initializer}
    transposed = next((n.input[0] for n in model.graph.node if n.op_type == "Transpose" and name in n.output), None)
    weight = weights.get(name) or weights.get(transposed or "")
    return weight is not None and len(weight.dims) == 2
