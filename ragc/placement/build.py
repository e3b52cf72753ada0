"""Turn an ir.Graph into a PlacementProblem: fused units, their costs per device, and the bytes between them."""

from __future__ import annotations

import math
from collections.abc import Callable

from ragc import ir
from ragc.placement.problem import Edge, PlacementProblem, TransferFn, Unit
from ragc.placement.units import build_units

OpCostFn = Callable[[ir.Graph, ir.Op, str], float]  # (graph, op, device) -> ms; inf where unsupported


def build_problem(
    graph: ir.Graph,
    devices: list[str],
    op_cost_ms: OpCostFn,
    transfer_ms: TransferFn,
    capacity_bytes: dict[str, int] | None = None,
    units: list[tuple[str, list[str]]] | None = None,
    host_transfer_ms: TransferFn | None = None,
) -> PlacementProblem:
    """A unit costs the sum of its ops' costs on a device (inf if any op is inf there); an edge carries the bytes
    of the tensors one unit writes and another reads; host bytes are the graph inputs read and outputs written,
    priced by `host_transfer_ms` (they start no partition; `transfer_ms` where None).
    A unit's memory is the weights it reads; the activations, whose buffers the backends reuse by lifetime, take
    the graph's peak of live activation bytes off every device's capacity."""
    unit_ops = build_units(graph) if units is None else units
    unit_of = {op: name for name, ops in unit_ops for op in ops}
    producers = graph.producers()
    graph_inputs, graph_outputs = set(graph.inputs), set(graph.outputs)
    units = []
    edge_bytes: dict[tuple[str, str], int] = {}
    for name, op_names in unit_ops:
        ops = [graph.op(n) for n in op_names]
        read = sorted({t for op in ops for t in op.inputs if t})
        written = sorted({t for op in ops for t in op.outputs if t})
        for tensor in read:
            if tensor in producers and unit_of[producers[tensor].name] != name:
                key = (unit_of[producers[tensor].name], name)
                edge_bytes[key] = edge_bytes.get(key, 0) + graph.tensors[tensor].nbytes
        units.append(
            Unit(
                name=name,
                ops=op_names,
                cost_ms={d: _unit_cost(graph, ops, d, op_cost_ms) for d in devices},
                mem_bytes=sum(graph.tensors[t].nbytes for t in read if graph.tensors[t].is_constant),
                host_in_bytes=sum(graph.tensors[t].nbytes for t in read if t in graph_inputs),
                host_out_bytes=sum(graph.tensors[t].nbytes for t in written if t in graph_outputs),
            )
        )
    peak = peak_activation_bytes(graph) if capacity_bytes else 0
    order = {name: k for k, (name, _) in enumerate(unit_ops)}
    pairs = sorted(edge_bytes, key=lambda pair: (order[pair[0]], order[pair[1]]))
    edges = [Edge(s, t, edge_bytes[(s, t)]) for s, t in pairs]
    return PlacementProblem(
        units=units,
        edges=edges,
        devices=list(devices),
        transfer_ms=transfer_ms,
        capacity_bytes={d: max(0, c - peak) for d, c in (capacity_bytes or {}).items()},
        host_transfer_ms=host_transfer_ms,
    )


def peak_activation_bytes(graph: ir.Graph) -> int:
    """The most bytes of non-constant tensors live at once, running the ops in order: a tensor lives from its
    writer (graph inputs: the start) to its last reader (graph outputs: the end)."""
    last: dict[str, int] = {}
    for step, op in enumerate(graph.ops):
        for t in op.inputs:
            if t and not graph.tensors[t].is_constant:
                last[t] = step
    end = len(graph.ops)
    last |= {t: end for t in graph.outputs}
    live = sum(graph.tensors[t].nbytes for t in graph.inputs)
    peak = live
    for step, op in enumerate(graph.ops):
        live += sum(graph.tensors[t].nbytes for t in op.outputs if t)
        peak = max(peak, live)
        done = {t for t in {*op.inputs, *op.outputs} if t and not graph.tensors[t].is_constant}
        live -= sum(graph.tensors[t].nbytes for t in done if last.get(t, step) == step)  # unread outputs: at once
    return peak


def _unit_cost(graph: ir.Graph, ops: list[ir.Op], device: str, op_cost_ms: OpCostFn) -> float:
    total = 0.0
    for op in ops:
        cost = float(op_cost_ms(graph, op, device))
        if math.isinf(cost):
            return math.inf
        total += cost
    return total
