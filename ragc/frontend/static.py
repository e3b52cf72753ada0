"""Make an exported graph static: once the input shapes are fixed, evaluate its shape arithmetic away.

Exporters compute reshape targets, masks and position ids from `Shape` nodes. Each round replaces every Shape
(and Size) of a tensor whose shape is known by a constant, folds what became constant, and infers shapes again,
which makes more shapes known; rounds stop when nothing changes.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from ragc.frontend import gs_bridge

MAX_ROUNDS = 16


def _static_shape(tensor: gs.Tensor) -> list[int] | None:
    shape = tensor.shape
    if shape is None or any(not isinstance(d, int) or d < 0 for d in shape):
        return None
    return list(shape)


def materialize_shapes(graph: gs.Graph) -> int:
    """Replace each Shape and Size node of a statically shaped tensor by its value; returns how many."""
    count = 0
    for node in [n for n in graph.nodes if n.op in ("Shape", "Size")]:
        shape = _static_shape(node.inputs[0])
        if shape is None:
            continue
        if node.op == "Size":
            value = np.array(int(np.prod(shape, dtype=np.int64)), np.int64)
        else:  # start/end (opset 15) clamp like a Python slice
            value = np.array(shape[node.attrs.get("start", 0) : node.attrs.get("end", len(shape))], np.int64)
        out = node.outputs[0]
        out.to_constant(value)
        out.inputs.clear()
        node.outputs.clear()
        count += 1
    return count


def fold_to_static(graph: gs.Graph) -> gs.Graph:
    """Materialize shapes, fold constants and re-infer shapes until a round changes nothing."""
    materialize_shapes(graph)
    for _ in range(MAX_ROUNDS):
        nodes = len(graph.nodes)
        graph = gs_bridge.reinfer_shapes(gs_bridge.fold_constants(graph))
        if not materialize_shapes(graph) and len(graph.nodes) == nodes:
            break
    return graph
