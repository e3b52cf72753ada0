"""The com.microsoft ops that onnxruntime's transformer optimizer and Optimum write, lowered to standard ONNX ops.

Each lowering replaces one node by standard nodes computing what onnxruntime's contrib kernel computes, written
shape-agnostically (Reshape with 0 and -1, Shape-derived masks) so that static.py folds the shape arithmetic
once input shapes are fixed. The attention family is in contrib_attention.py (imported here, which registers
it). A variant no lowering covers is refused with one line naming the op, the variant and the fix.
"""

from __future__ import annotations

import onnx
import onnx_graphsurgeon as gs

from ragc.frontend import contrib_attention, gs_bridge
from ragc.frontend.contrib_builder import DEFAULT_DOMAIN_OPS, DOMAIN, LOWERINGS, NodeBuilder, lowers


def _skip_sum(b: NodeBuilder, bias_index: int) -> gs.Variable:
    """input + skip (+ bias), written to output 3 when the model reads it."""
    total = b.op("Add", [b.input(0), b.input(1)])
    bias = b.input(bias_index)
    if bias is not None:
        total = b.op("Add", [total, bias])
    summed = b.output(3)
    return b.op("Identity", [total], summed) if summed is not None else total


@lowers("SkipLayerNormalization")
def _skip_layer_norm(b: NodeBuilder) -> None:
    total = _skip_sum(b, 4)
    beta = b.input(3)
    inputs = [total, b.input(2)] + ([beta] if beta is not None else [])
    outputs = [b.output(0), b.output(1), b.output(2)]
    b.op_multi("LayerNormalization", inputs, outputs, axis=-1, epsilon=b.attr("epsilon", 1e-12))


@lowers("SkipSimplifiedLayerNormalization")
def _skip_simplified_layer_norm(b: NodeBuilder) -> None:
    if b.output(1) is not None or b.output(2) is not None:
        raise b.refuse("the mean / inv_std_var outputs")
    b.rms_norm(_skip_sum(b, 3), b.input(2), b.attr("epsilon", 1e-12), -1, b.output(0))


@lowers("SimplifiedLayerNormalization")
def _simplified_layer_norm(b: NodeBuilder) -> None:
    if b.output(1) is not None:
        raise b.refuse("the inv_std_var output")
    b.rms_norm(b.input(0), b.input(1), b.attr("epsilon", 1e-5), b.attr("axis", -1), b.output(0))


@lowers("FastGelu")
def _fast_gelu(b: NodeBuilder) -> None:
    x, bias = b.input(0), b.input(1)
    b.gelu(b.op("Add", [x, bias]) if bias is not None else x, "tanh", b.output(0))


@lowers("BiasGelu")
def _bias_gelu(b: NodeBuilder) -> None:
    b.gelu(b.op("Add", [b.input(0), b.input(1)]), "none", b.output(0))


@lowers("Gelu")
def _gelu(b: NodeBuilder) -> None:
    b.gelu(b.input(0), "none", b.output(0))


@lowers("QuickGelu")
def _quick_gelu(b: NodeBuilder) -> None:
    x = b.input(0)
    b.op("Mul", [x, b.op("Sigmoid", [b.op("Mul", [x, float(b.attr("alpha", 1.702))])])], b.output(0))


def is_contrib(node: onnx.NodeProto, opset: int) -> bool:
    """Whether the front end lowers this node (a com.microsoft op it knows, or one onnxruntime puts in "")."""
    if node.domain == DOMAIN:
        return node.op_type in LOWERINGS
    return (
        node.domain in ("", "ai.onnx")
        and node.op_type in DEFAULT_DOMAIN_OPS
        and not onnx.defs.has(node.op_type, opset, "")
    )


def claim_default_domain(model: onnx.ModelProto, opset: int) -> None:
    """Move onnxruntime's default-domain contrib ops to com.microsoft, so the ONNX checker accepts the model."""
    moved = False
    for node in model.graph.node:
        if node.domain in ("", "ai.onnx") and is_contrib(node, opset):
            node.domain, moved = DOMAIN, True
    if moved and all(o.domain != DOMAIN for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(DOMAIN, 1))


def lower_contrib_ops(graph: gs.Graph) -> gs.Graph:
    """Replace every com.microsoft node by standard nodes."""
    for index, node in enumerate([n for n in graph.nodes if n.domain == DOMAIN]):
        LOWERINGS[node.op](NodeBuilder(graph, node, f"ragc.contrib{index}.{node.op}"))
        node.outputs = []
    return gs_bridge.cleanup(graph)


__all__ = ["DOMAIN", "claim_default_domain", "contrib_attention", "is_contrib", "lower_contrib_ops"]
