"""Group placed ops into partitions: maximal same-processor connected regions, merged only where the
partition graph stays acyclic, optionally cut before given ops."""

from __future__ import annotations

from dataclasses import dataclass

from ragc import ir


@dataclass
class Partition:
    id: str
    device: str
    ops: list[str]  # in graph order
    graph: ir.Graph  # standalone subgraph: its inputs/outputs are the tensors crossing the boundary


@dataclass
class _Region:
    device: str
    segment: int  # regions never merge across a cut
    ancestors: set[int]  # every region this one (transitively) reads from


def partition(graph: ir.Graph, device_of: dict[str, str], cut_before: frozenset[str] = frozenset()) -> list[Partition]:
    """`device_of` maps every op name to a processor; `cut_before` names ops that must start a new partition."""
    region_of, regions = _grow_regions(graph, device_of, cut_before)
    region_of = _merge_regions(graph, region_of, regions)
    partitions = []
    for index, region in enumerate(_topological_order(graph, region_of)):
        ops = [op.name for op in graph.ops if region_of[op.name] == region]
        partitions.append(Partition(f"p{index}", regions[region].device, ops, graph.subgraph(ops)))
    return partitions


def _grow_regions(
    graph: ir.Graph, device_of: dict[str, str], cut_before: frozenset[str]
) -> tuple[dict[str, int], dict[int, _Region]]:
    """One pass in graph order: an op joins a producer's region on its device when that creates no cycle."""
    producers = graph.producers()
    region_of: dict[str, int] = {}
    regions: dict[int, _Region] = {}
    segment = 0
    for op in graph.ops:
        segment += op.name in cut_before
        device = device_of[op.name]
        parents = sorted({region_of[producers[n].name] for n in op.inputs if n in producers})
        chosen = next(
            (
                r
                for r in parents
                if regions[r].device == device
                and regions[r].segment == segment
                and all(r not in regions[other].ancestors for other in parents if other != r)
            ),
            None,
        )
        if chosen is None:
            chosen = len(regions)
            regions[chosen] = _Region(device, segment, set())
        region_of[op.name] = chosen
        added = set()
        for other in parents:
            if other != chosen:
                added |= {other} | regions[other].ancestors
        if added - regions[chosen].ancestors:
            for region in regions.values():  # the region and everything downstream of it gain these ancestors
                if region is regions[chosen] or chosen in region.ancestors:
                    region.ancestors |= added
    return region_of, regions


def _region_edges(graph: ir.Graph, region_of: dict[str, int]) -> dict[int, set[int]]:
    producers = graph.producers()
    edges: dict[int, set[int]] = {r: set() for r in region_of.values()}
    for op in graph.ops:
        for name in op.inputs:
            if name in producers and region_of[producers[name].name] != region_of[op.name]:
                edges[region_of[producers[name].name]].add(region_of[op.name])
    return edges


def _reaches_indirectly(edges: dict[int, set[int]], src: int, dst: int) -> bool:
    """Is there a path src -> ... -> dst through at least one other region?"""
    stack = [n for n in edges[src] if n != dst]
    seen = set(stack)
    while stack:
        node = stack.pop()
        if node == dst:
            return True
        for nxt in edges[node] - seen:
            seen.add(nxt)
            stack.append(nxt)
    return False


def _merge_regions(graph: ir.Graph, region_of: dict[str, int], regions: dict[int, _Region]) -> dict[str, int]:
    """Merge pairs of same-device, same-segment regions while no path between them leaves the pair."""
    while True:
        edges = _region_edges(graph, region_of)
        live = sorted(edges)
        pair = next(
            (
                (a, b)
                for i, a in enumerate(live)
                for b in live[i + 1 :]
                if regions[a].device == regions[b].device
                and regions[a].segment == regions[b].segment
                and not _reaches_indirectly(edges, a, b)
                and not _reaches_indirectly(edges, b, a)
            ),
            None,
        )
        if pair is None:
            return region_of
        keep, drop = pair
        region_of = {name: keep if r == drop else r for name, r in region_of.items()}


def _topological_order(graph: ir.Graph, region_of: dict[str, int]) -> list[int]:
    """Regions ordered so each comes after those it reads from; ties broken by first op position."""
    edges = _region_edges(graph, region_of)
    indegree = dict.fromkeys(edges, 0)
    for targets in edges.values():
        for target in targets:
            indegree[target] += 1
    first_pos: dict[int, int] = {}
    for index, op in enumerate(graph.ops):
        first_pos.setdefault(region_of[op.name], index)
    ready = sorted((first_pos[r], r) for r, d in indegree.items() if d == 0)
    order = []
    while ready:
        _, region = ready.pop(0)
        order.append(region)
        for target in edges[region]:
            indegree[target] -= 1
            if indegree[target] == 0:
                ready.append((first_pos[target], target))
        ready.sort()
    return order
