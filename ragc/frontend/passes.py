"""Graph rewrites on the onnx-graphsurgeon graph, each a named function; `PIPELINE` lists them in order."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ragc.frontend import contrib, gs_bridge, qdq, qlinear, static


def _constant(tensor: gs.Tensor | None) -> np.ndarray | None:
    return tensor.values if isinstance(tensor, gs.Constant) else None


def fold_batchnorm_into_conv(graph: gs.Graph) -> gs.Graph:
    """Conv (constant weights) followed only by BatchNormalization (constant statistics) -> one Conv."""
    for bn in [n for n in graph.nodes if n.op == "BatchNormalization" and len(n.outputs) == 1]:
        conv_out = bn.inputs[0]
        if len(conv_out.inputs) != 1 or len(conv_out.outputs) != 1 or conv_out in graph.outputs:
            continue
        conv = conv_out.inputs[0]
        weight = _constant(conv.inputs[1]) if conv.op == "Conv" and len(conv.inputs) > 1 else None
        stats = [_constant(t) for t in bn.inputs[1:5]]
        if weight is None or any(s is None for s in stats):
            continue
        scale, shift, mean, var = (s.astype(np.float64) for s in stats)
        factor = scale / np.sqrt(var + bn.attrs.get("epsilon", 1e-5))
        bias = _constant(conv.inputs[2]) if len(conv.inputs) > 2 else None
        bias = np.zeros(weight.shape[0]) if bias is None else bias.astype(np.float64)
        new_weight = (weight.astype(np.float64) * factor.reshape(-1, *([1] * (weight.ndim - 1)))).astype(weight.dtype)
        new_bias = ((bias - mean) * factor + shift).astype(weight.dtype)
        conv.inputs = [
            conv.inputs[0],
            gs.Constant(f"{conv.name}.w_bn", new_weight),
            gs.Constant(f"{conv.name}.b_bn", new_bias),
        ]
        conv.outputs = [bn.outputs[0]]
        bn.outputs = []
    return gs_bridge.cleanup(graph)


def batchnorm_to_affine(graph: gs.Graph) -> gs.Graph:
    """A BatchNormalization left unfolded (after a Concat, say) with constant statistics -> Mul and Add by
    per-channel constants: the same numbers, in ops every processor runs."""
    for bn in [n for n in graph.nodes if n.op == "BatchNormalization" and len(n.outputs) == 1]:
        stats = [_constant(t) for t in bn.inputs[1:5]]
        rank = len(bn.inputs[0].shape or [])
        if any(s is None for s in stats) or rank < 2:
            continue
        scale, shift, mean, var = (s.astype(np.float64) for s in stats)
        factor = scale / np.sqrt(var + bn.attrs.get("epsilon", 1e-5))
        per_channel = (-1, *([1] * (rank - 2)))
        dtype = stats[0].dtype
        scaled = gs.Variable(f"{bn.name}.scaled", dtype=bn.inputs[0].dtype, shape=bn.inputs[0].shape)
        mul = gs.Node(
            "Mul",
            f"{bn.name}.mul",
            inputs=[bn.inputs[0], gs.Constant(f"{bn.name}.factor", factor.reshape(per_channel).astype(dtype))],
            outputs=[scaled],
        )
        add = gs.Node(
            "Add",
            f"{bn.name}.add",
            inputs=[
                scaled,
                gs.Constant(f"{bn.name}.offset", (shift - mean * factor).reshape(per_channel).astype(dtype)),
            ],
            outputs=[bn.outputs[0]],
        )
        bn.outputs = []
        graph.nodes += [mul, add]
    return gs_bridge.cleanup(graph)


def _is_noop(node: gs.Node) -> bool:
    """Dropout (inference), Identity, and a Cast to the dtype its input already has (the TorchScript exporter
    writes float -> float)."""
    if node.op == "Cast":
        src = node.inputs[0].dtype
        return src is not None and np.dtype(src) == np.dtype(onnx.helper.tensor_dtype_to_np_dtype(node.attrs["to"]))
    return node.op in ("Dropout", "Identity")


def remove_inference_noops(graph: gs.Graph) -> gs.Graph:
    """No-op nodes (_is_noop) become plain edges, unless they feed a graph output directly."""
    for node in [n for n in graph.nodes if _is_noop(n)]:
        src, dst = node.inputs[0], node.outputs[0]
        if dst in graph.outputs or any(mask.outputs or mask in graph.outputs for mask in node.outputs[1:]):
            continue
        for consumer in list(dst.outputs):
            consumer.inputs = [src if t is dst else t for t in consumer.inputs]
        node.outputs = []
    return gs_bridge.cleanup(graph)


def drop_empty_concat_inputs(graph: gs.Graph) -> gs.Graph:
    """Concat inputs with no elements (the unrotated rest of a full rotary embedding, say) are left out."""
    for node in [n for n in graph.nodes if n.op == "Concat" and len(n.inputs) > 1]:
        kept = [t for t in node.inputs if t.shape is None or 0 not in t.shape]
        if kept and len(kept) < len(node.inputs):
            node.inputs = kept
    return gs_bridge.cleanup(graph)


def _keeps_memory_order(shape: tuple[int, ...], perm: list[int]) -> bool:
    moved = [axis for axis in perm if shape[axis] != 1]
    return moved == sorted(moved)


def transposes_of_unit_axes_to_reshapes(graph: gs.Graph) -> gs.Graph:
    """A Transpose that moves only axes of size 1 (torch's [S, 1, D] <-> [1, S, D] at batch 1) keeps every element
    where it was: it becomes a Reshape, which no backend copies."""
    for node in [n for n in graph.nodes if n.op == "Transpose"]:
        src, dst = node.inputs[0], node.outputs[0]
        shape = tuple(src.shape) if src.shape is not None else ()
        if not shape or not all(isinstance(d, int) for d in shape):
            continue
        perm = list(node.attrs.get("perm", range(len(shape))[::-1]))
        if not _keeps_memory_order(shape, perm):
            continue
        target = gs.Constant(f"{dst.name}_shape", np.array([shape[a] for a in perm], np.int64))
        node.op, node.attrs, node.inputs = "Reshape", {}, [src, target]
    return graph


PIPELINE: list[Callable[[gs.Graph], gs.Graph]] = [
    contrib.lower_contrib_ops,
    qdq.fold_constant_dequantize,
    qdq.fake_quantize_activations,
    qlinear.lower_qlinear,
    static.fold_to_static,
    transposes_of_unit_axes_to_reshapes,
    drop_empty_concat_inputs,
    fold_batchnorm_into_conv,
    batchnorm_to_affine,
    remove_inference_noops,
    gs_bridge.cleanup,
]
