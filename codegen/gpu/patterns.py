"""GPU pattern fusion: op sequences the exporters write, each replaced by one op with a one-dispatch kernel
(match_attention.py: attention; match_norm.py: RMSNorm and rotary embedding). A match needs every inner tensor
read only inside it (and not a partition output); otherwise the ops stay.
"""

from __future__ import annotations

from dataclasses import replace

from codegen.gpu.match import GraphView
from codegen.gpu.match_attention import match_attention, match_onnx_attention
from codegen.gpu.match_norm import match_rms_norm, match_rotate_half
from ragc.ir import Graph, Op

MATCHERS = (  # the rotation before attention, which reads it into its Q and K
    (match_rms_norm, "Mul"),
    (match_rotate_half, "Add"),
    (match_attention, "MatMul"),
    (match_onnx_attention, "Attention"),
)


def fuse_patterns(graph: Graph) -> Graph:
    """A new graph (tensors copied) with every attention and RMSNorm pattern replaced by its fused op."""
    graph = Graph(list(graph.ops), dict(graph.tensors), list(graph.inputs), list(graph.outputs), graph.opset)
    for matcher, op_type in MATCHERS:
        view = GraphView(graph)
        replaced: dict[str, Op] = {}
        dropped: set[str] = set()
        for op in reversed(graph.ops):  # the outermost op of nested candidates first
            if op.op_type != op_type or op.name in dropped:
                continue
            found = matcher(view, op)
            if found is None or any(m.name in dropped or m.name in replaced for m in found[1] if m is not op):
                continue
            fused, members = found
            replaced[op.name] = fused
            dropped.update(m.name for m in members if m.name != op.name)
        ops = [replaced.get(op.name, op) for op in graph.ops if op.name not in dropped]
        graph = replace(graph, ops=ops)
    return graph
