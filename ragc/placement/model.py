"""The timing model that every solver and the simulator share: a problem turned into arrays by unit and device.

A unit runs on one device, alone there while it runs. It may start once every predecessor has finished and,
when they ran on another device, its tensors have been transferred (a fixed delay per edge and device pair, no
link contention), and once its graph inputs have come from the host. The makespan is the last finish plus the
transfer of graph outputs back to the host.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ragc.errors import PlacementError
from ragc.placement.problem import HOST, PlacementProblem, TransferFn


@dataclass(frozen=True)
class Model:
    problem: PlacementProblem
    names: list[str]
    devices: list[str]
    cost: np.ndarray  # (units, devices) ms; inf where the device cannot run the unit or it alone exceeds capacity
    edges: list[tuple[int, int]]  # (src, dst) unit indices, src < dst
    edge_delay: np.ndarray  # (edges, devices, devices) ms when src runs on a and dst on b; zero diagonal
    preds: list[list[int]]  # unit -> ids of its incoming edges
    succs: list[list[int]]  # unit -> ids of its outgoing edges
    host_in: np.ndarray  # (units, devices) ms before the unit can start there: its graph inputs arriving
    host_out: np.ndarray  # (units, devices) ms after it finishes there until its graph outputs reach the host
    mem: np.ndarray  # (units,) bytes
    capacity: np.ndarray  # (devices,) bytes; inf where unlimited

    @property
    def n(self) -> int:
        return len(self.names)

    def allowed(self, unit: int) -> list[int]:
        """Device indices that can run the unit."""
        return [d for d in range(len(self.devices)) if math.isfinite(self.cost[unit, d])]

    def fits(self, dev: list[int]) -> bool:
        """Whether an assignment (unit -> device index) respects every device's memory capacity."""
        used = np.zeros(len(self.devices))
        np.add.at(used, dev, self.mem)
        return bool(np.all(used <= self.capacity))


def build_model(problem: PlacementProblem) -> Model:
    """Check a problem and turn it into the arrays the solvers read; raises PlacementError naming what is wrong."""
    devices = list(problem.devices)
    names = [u.name for u in problem.units]
    _check_names(names, devices)
    index = {name: i for i, name in enumerate(names)}
    transfer = _checked_transfer(problem.transfer_ms)
    host = _checked_transfer(problem.host_transfer_ms) if problem.host_transfer_ms else transfer
    capacity = np.array([float(problem.capacity_bytes.get(d, math.inf)) for d in devices])
    mem = np.array([float(u.mem_bytes) for u in problem.units])
    cost = np.array([[_checked_cost(u.name, d, u.cost_ms.get(d, math.inf)) for d in devices] for u in problem.units])
    cost[mem[:, None] > capacity[None, :]] = math.inf
    for i, row in enumerate(cost):
        if not np.isfinite(row).any():
            raise PlacementError(
                f"unit {names[i]!r} can run on none of {devices} (unsupported or over capacity); "
                "add a device that supports it or raise capacity_bytes"
            )
    nbytes = _merged_edges(problem, index)
    edges = sorted(nbytes)
    edge_delay = np.zeros((len(edges), len(devices), len(devices)))
    for e, (s, t) in enumerate(edges):
        edge_delay[e] = _delay_matrix(devices, transfer, nbytes[(s, t)])
    preds: list[list[int]] = [[] for _ in names]
    succs: list[list[int]] = [[] for _ in names]
    for e, (s, t) in enumerate(edges):
        succs[s].append(e)
        preds[t].append(e)
    host_in = np.array([[_host_delay(host, HOST, d, u.host_in_bytes) for d in devices] for u in problem.units])
    host_out = np.array([[_host_delay(host, d, HOST, u.host_out_bytes) for d in devices] for u in problem.units])
    return Model(problem, names, devices, cost, edges, edge_delay, preds, succs, host_in, host_out, mem, capacity)


def _check_names(names: list[str], devices: list[str]) -> None:
    if not names:
        raise PlacementError("the placement problem has no units; give it at least one unit")
    if not devices or len(set(devices)) != len(devices):
        raise PlacementError(f"devices must be a non-empty list without repeats, got {devices}")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})[0]
        raise PlacementError(f"unit name {dup!r} appears twice; give every unit a unique name")


def _checked_cost(unit: str, device: str, value: float) -> float:
    value = float(value)
    if math.isnan(value) or value < 0:
        raise PlacementError(f"unit {unit!r} has cost {value} on {device}; costs must be >= 0 ms (inf if unsupported)")
    return value


def _checked_transfer(fn: TransferFn) -> TransferFn:
    """One of the problem's transfer functions, checked to return a finite, non-negative number of ms."""

    def transfer(src: str, dst: str, nbytes: int) -> float:
        value = float(fn(src, dst, nbytes))
        if not (math.isfinite(value) and value >= 0):
            raise PlacementError(f"transfer_ms({src!r}, {dst!r}, {nbytes}) returned {value}; it must be finite, >= 0")
        return value

    return transfer


def _merged_edges(problem: PlacementProblem, index: dict[str, int]) -> dict[tuple[int, int], int]:
    """(src, dst) -> bytes, repeated edges summed; checks that units are listed in topological order."""
    nbytes: dict[tuple[int, int], int] = {}
    for edge in problem.edges:
        if edge.src not in index or edge.dst not in index:
            missing = edge.src if edge.src not in index else edge.dst
            raise PlacementError(f"edge {edge.src!r} -> {edge.dst!r} names unknown unit {missing!r}; fix the edge list")
        s, t = index[edge.src], index[edge.dst]
        if s >= t:
            raise PlacementError(f"edge {edge.src!r} -> {edge.dst!r} goes backwards; list units in topological order")
        nbytes[(s, t)] = nbytes.get((s, t), 0) + int(edge.nbytes)
    return nbytes


def _delay_matrix(devices: list[str], transfer, nbytes: int) -> np.ndarray:
    return np.array([[0.0 if a == b else transfer(a, b, nbytes) for b in devices] for a in devices])


def _host_delay(transfer, src: str, dst: str, nbytes: int) -> float:
    return 0.0 if src == dst or nbytes <= 0 else transfer(src, dst, nbytes)


def upward_rank(model: Model, work: np.ndarray, edge_cost: np.ndarray, exit_cost: np.ndarray) -> np.ndarray:
    """Longest path from each unit to the end: rank = work + max(edge cost + successor's rank, exit cost)."""
    rank = np.zeros(model.n)
    for i in reversed(range(model.n)):
        tail = max([float(exit_cost[i])] + [edge_cost[e] + rank[model.edges[e][1]] for e in model.succs[i]])
        rank[i] = work[i] + tail
    return rank
