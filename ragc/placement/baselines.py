"""Baseline plans: the best single processor, and every unit on its own fastest processor."""

from __future__ import annotations

import time

import numpy as np

from ragc.errors import PlacementError
from ragc.placement.model import Model, upward_rank
from ragc.placement.problem import Placement
from ragc.placement.simulate import placement_from


def solve_single(model: Model) -> Placement:
    """The fastest plan that runs every unit on one device (only devices that support and hold all units)."""
    started = time.perf_counter()
    plans = []
    for d in range(len(model.devices)):
        dev = [d] * model.n
        if np.isfinite(model.cost[:, d]).all() and model.fits(dev):
            plans.append(placement_from(model, dev, _critical_first(model, dev), "single", started))
    if not plans:
        raise PlacementError(f"no single device of {model.devices} runs every unit; include the CPU in the devices")
    return min(plans, key=lambda p: p.predicted_ms)


def solve_greedy(model: Model) -> Placement:
    """Each unit on its fastest device (the next fastest where capacity is used up), transfers ignored."""
    started = time.perf_counter()
    used = np.zeros(len(model.devices))
    dev = []
    for i in range(model.n):
        fitting = [d for d in model.allowed(i) if used[d] + model.mem[i] <= model.capacity[d]]
        if not fitting:
            raise PlacementError(f"greedy: unit {model.names[i]!r} fits no device's remaining capacity; use 'ilp'")
        d = min(fitting, key=lambda k: (model.cost[i, k], k))
        used[d] += model.mem[i]
        dev.append(d)
    return placement_from(model, dev, _critical_first(model, dev), "greedy", started)


def _critical_first(model: Model, dev: list[int]) -> np.ndarray:
    """List-scheduling priority for a fixed assignment: longest remaining path first."""
    work = model.cost[np.arange(model.n), dev]
    edge_cost = np.array([model.edge_delay[e, dev[s], dev[t]] for e, (s, t) in enumerate(model.edges)])
    exit_cost = model.host_out[np.arange(model.n), dev]
    return -upward_rank(model, work, edge_cost, exit_cost)
