"""What the GPU pattern matchers (match_attention.py, match_norm.py) read of a graph."""

from __future__ import annotations

from ragc.ir import Graph, Op


class GraphView:
    """Producers and readers of a graph, and the ops a match will remove."""

    def __init__(self, graph: Graph) -> None:
        self.graph, self.producers, self.consumers = graph, graph.producers(), graph.consumers()

    def source(self, tensor: str, *op_types: str) -> Op | None:
        op = self.producers.get(tensor)
        return op if op is not None and op.op_type in op_types else None

    def private(self, tensor: str, readers: set[str]) -> bool:
        """`tensor` is read only by the ops named and is not a graph output."""
        return tensor not in self.graph.outputs and all(o.name in readers for o in self.consumers.get(tensor, []))

    def scalar(self, tensor: str) -> float | None:
        t = self.graph.tensors[tensor]
        return float(t.data.reshape(-1)[0]) if t.is_constant and t.data.size == 1 else None
