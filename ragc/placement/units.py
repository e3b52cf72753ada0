"""Fused units: the grains placement assigns to processors.

A unit is one producer op (Conv, Gemm, MatMul, pooling, Softmax, ...) followed by the chain of elementwise and
activation ops that read it, as long as each intermediate tensor has exactly one reader and is not a graph
output. Metadata ops (Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout) join their producer's unit. An
op never joins a unit if that would make two units depend on each other.
"""

from __future__ import annotations

import heapq

from ragc import ir

METADATA = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"})
ELEMENTWISE = frozenset(
    {
        "Abs",
        "Acos",
        "Acosh",
        "Add",
        "And",
        "Asin",
        "Asinh",
        "Atan",
        "Atanh",
        "BitShift",
        "Cast",
        "Ceil",
        "Celu",
        "Clip",
        "Cos",
        "Cosh",
        "Div",
        "Elu",
        "Equal",
        "Erf",
        "Exp",
        "FastGelu",
        "Floor",
        "Gelu",
        "Greater",
        "GreaterOrEqual",
        "HardSigmoid",
        "HardSwish",
        "IsInf",
        "IsNaN",
        "LeakyRelu",
        "Less",
        "LessOrEqual",
        "Log",
        "Max",
        "Mean",
        "Min",
        "Mish",
        "Mod",
        "Mul",
        "Neg",
        "Not",
        "Or",
        "Pow",
        "PRelu",
        "QuickGelu",
        "Reciprocal",
        "Relu",
        "Round",
        "Selu",
        "Shrink",
        "Sigmoid",
        "Sign",
        "Sin",
        "Sinh",
        "Softplus",
        "Softsign",
        "Sqrt",
        "Sub",
        "Sum",
        "Swish",
        "Tan",
        "Tanh",
        "ThresholdedRelu",
        "Where",
        "Xor",
    }
)


def build_units(graph: ir.Graph) -> list[tuple[str, list[str]]]:
    """(unit name, op names in graph order) per unit, units in topological order; a unit is named after its first op."""
    producers = graph.producers()
    consumers = graph.consumers()
    outputs = set(graph.outputs)
    unit_of: dict[str, int] = {}  # op name -> unit id
    members: list[list[str]] = []
    reads: list[set[int]] = []  # unit id -> units it reads from
    for op in graph.ops:
        target = _host_unit(op, producers, consumers, outputs, unit_of, reads)
        if target is None:
            target = len(members)
            members.append([])
            reads.append(set())
        members[target].append(op.name)
        unit_of[op.name] = target
        reads[target] |= {unit_of[producers[n].name] for n in op.inputs if n in producers} - {target}
    position = {op.name: k for k, op in enumerate(graph.ops)}
    order = _topological(reads, [position[m[0]] for m in members])
    return [(members[u][0], members[u]) for u in order]


def _host_unit(
    op: ir.Op,
    producers: dict[str, ir.Op],
    consumers: dict[str, list[ir.Op]],
    outputs: set[str],
    unit_of: dict[str, int],
    reads: list[set[int]],
) -> int | None:
    """The unit this op joins, or None when it starts one."""
    data = [n for n in op.inputs if n in producers]
    if op.op_type in METADATA:
        candidates = data[:1] if op.inputs and op.inputs[0] in producers else []
    elif op.op_type in ELEMENTWISE:
        candidates = [n for n in data if len({c.name for c in consumers[n]}) == 1 and n not in outputs]
    else:
        return None
    for name in sorted(candidates, key=lambda n: -unit_of[producers[n].name]):  # the closest producer first
        target = unit_of[producers[name].name]
        others = {unit_of[producers[n].name] for n in data} - {target}
        if not any(_reaches(reads, other, target) for other in others):
            return target
    return None


def _reaches(reads: list[set[int]], start: int, goal: int) -> bool:
    """Whether unit `start` (transitively) reads from unit `goal`."""
    seen, stack = {start}, [start]
    while stack:
        for nxt in reads[stack.pop()]:
            if nxt == goal:
                return True
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return False


def _topological(reads: list[set[int]], first_index: list[int]) -> list[int]:
    """Units in dependency order, ties broken by the position of their first op."""
    waiting = [len(r) for r in reads]
    readers: list[list[int]] = [[] for _ in reads]
    for u, sources in enumerate(reads):
        for s in sources:
            readers[s].append(u)
    heap = [(first_index[u], u) for u in range(len(reads)) if waiting[u] == 0]
    heapq.heapify(heap)
    order = []
    while heap:
        _, u = heapq.heappop(heap)
        order.append(u)
        for r in readers[u]:
            waiting[r] -= 1
            if waiting[r] == 0:
                heapq.heappush(heap, (first_index[r], r))
    return order
