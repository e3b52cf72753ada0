"""HEFT list scheduling: units by upward rank (mean costs), each on the device with the earliest finish,
filling idle gaps (insertion)."""

from __future__ import annotations

import bisect
import time

import numpy as np

from ragc.errors import PlacementError
from ragc.placement.model import Model, upward_rank
from ragc.placement.problem import Placement
from ragc.placement.simulate import placement_from


def solve_heft(model: Model) -> Placement:
    started = time.perf_counter()
    ndev = len(model.devices)
    rank = upward_rank(model, *_mean_costs(model))
    busy: list[list[tuple[float, float]]] = [[] for _ in range(ndev)]
    used = np.zeros(ndev)
    dev = [-1] * model.n
    start = np.zeros(model.n)
    finish = np.zeros(model.n)
    for i in sorted(range(model.n), key=lambda k: (-rank[k], k)):
        best = None
        for d in model.allowed(i):
            if used[d] + model.mem[i] > model.capacity[d]:
                continue
            ready = max(
                [model.host_in[i, d]]
                + [finish[s] + model.edge_delay[e, dev[s], d] for e in model.preds[i] for s in [model.edges[e][0]]]
            )
            begin = _earliest_gap(busy[d], ready, model.cost[i, d])
            key = (begin + model.cost[i, d] + model.host_out[i, d], d)
            if best is None or key < best[0]:
                best = (key, d, begin)
        if best is None:
            raise PlacementError(f"heft: unit {model.names[i]!r} fits no device's remaining capacity; use 'ilp'")
        _, d, begin = best
        dev[i], start[i], finish[i] = d, begin, begin + model.cost[i, d]
        used[d] += model.mem[i]
        bisect.insort(busy[d], (start[i], finish[i]))
    return placement_from(model, dev, start, "heft", started)


def _mean_costs(model: Model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-unit mean cost and exit transfer over the devices that run it; per-edge mean delay over device pairs."""
    finite = np.isfinite(model.cost)
    work = np.where(finite, model.cost, 0.0).sum(axis=1) / finite.sum(axis=1)
    exit_cost = np.where(finite, model.host_out, 0.0).sum(axis=1) / finite.sum(axis=1)
    edge_cost = model.edge_delay.mean(axis=(1, 2)) if model.edges else np.zeros(0)
    return work, edge_cost, exit_cost


def _earliest_gap(busy: list[tuple[float, float]], ready: float, length: float) -> float:
    """Earliest start >= ready where `length` fits between the device's busy intervals (sorted by start)."""
    t = ready
    for begin, end in busy:
        if t + length <= begin:
            return t
        t = max(t, end)
    return t
