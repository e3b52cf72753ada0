"""The placement problem every solver reads, and the placement every solver returns."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

HOST = "cpu"  # graph inputs arrive in, and outputs leave from, host memory


@dataclass
class Unit:
    """A fused node: one producer op with the elementwise chain folded into it; the unit of placement."""

    name: str
    ops: list[str]  # op names of the ir.Graph, in graph order
    cost_ms: dict[str, float]  # device -> predicted time; math.inf where the device cannot run it
    mem_bytes: int = 0  # weights plus outputs, for capacity checks
    host_in_bytes: int = 0  # bytes it reads from graph inputs
    host_out_bytes: int = 0  # bytes it writes to graph outputs


@dataclass
class Edge:
    src: str
    dst: str
    nbytes: int


TransferFn = Callable[[str, str, int], float]  # (from device, to device, bytes) -> ms; 0 when equal


@dataclass
class PlacementProblem:
    units: list[Unit]  # topological order
    edges: list[Edge]
    devices: list[str]
    transfer_ms: TransferFn
    capacity_bytes: dict[str, int] = field(default_factory=dict)  # absent device: unlimited
    # graph inputs from and outputs to the host, which start no partition (transfer_ms where None)
    host_transfer_ms: TransferFn | None = None

    def unit(self, name: str) -> Unit:
        return next(u for u in self.units if u.name == name)

    def supported(self, unit: Unit, device: str) -> bool:
        return math.isfinite(unit.cost_ms.get(device, math.inf))


@dataclass
class Placement:
    assignment: dict[str, str]  # unit name -> device
    predicted_ms: float  # makespan (latency objective) or slowest stage (throughput objective)
    solver: str
    gap: float | None = None  # relative optimality gap where the solver proves one (0.0 = optimal)
    solve_s: float = 0.0
    start_ms: dict[str, float] = field(default_factory=dict)
    finish_ms: dict[str, float] = field(default_factory=dict)
    stages: list[list[str]] | None = None  # throughput objective: unit names per pipeline stage, in order
