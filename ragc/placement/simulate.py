"""The one list-schedule simulator every solver ends with: an assignment plus a per-device order -> times."""

from __future__ import annotations

import heapq
import time

import numpy as np

from ragc.errors import PlacementError
from ragc.placement.model import Model, build_model
from ragc.placement.problem import Placement, PlacementProblem


def simulate(problem: PlacementProblem | Model, assignment: dict[str, str], order: dict[str, list[str]]) -> Placement:
    """Start and finish of every unit, each as early as the model allows given the devices' orders."""
    model = problem if isinstance(problem, Model) else build_model(problem)
    missing = [n for n in model.names if n not in assignment]
    if missing:
        raise PlacementError(f"unit {missing[0]!r} has no device in the assignment; assign every unit")
    dev_index = {d: k for k, d in enumerate(model.devices)}
    unit_index = {n: i for i, n in enumerate(model.names)}
    dev = [dev_index[assignment[n]] for n in model.names]
    seqs = [[unit_index[n] for n in order.get(d, [])] for d in model.devices]
    start, finish, makespan = run(model, dev, seqs)
    return _placement(model, dev, start, finish, makespan, "simulate", None, 0.0)


def run(model: Model, dev: list[int], order: list[list[int]]) -> tuple[np.ndarray, np.ndarray, float]:
    """Index-level simulation: dev[unit] is a device index, order[device] the units it runs, first to last."""
    n = model.n
    _check_order(model, dev, order)
    prev = [-1] * n
    after = [-1] * n
    for seq in order:
        for a, b in zip(seq[:-1], seq[1:], strict=True):
            prev[b], after[a] = a, b
    waiting = [len(model.preds[i]) + (prev[i] >= 0) for i in range(n)]
    ready = [i for i in range(n) if waiting[i] == 0]
    start, finish = np.zeros(n), np.zeros(n)
    done = 0
    while ready:
        i = ready.pop()
        d = dev[i]
        t = model.host_in[i, d]
        if prev[i] >= 0:
            t = max(t, finish[prev[i]])
        for e in model.preds[i]:
            s = model.edges[e][0]
            t = max(t, finish[s] + model.edge_delay[e, dev[s], d])
        start[i], finish[i] = t, t + model.cost[i, d]
        done += 1
        for j in [model.edges[e][1] for e in model.succs[i]] + ([after[i]] if after[i] >= 0 else []):
            waiting[j] -= 1
            if waiting[j] == 0:
                ready.append(j)
    if done < n:
        raise PlacementError("the per-device order contradicts the dependencies (deadlock); order units topologically")
    makespan = float(max(finish[i] + model.host_out[i, dev[i]] for i in range(n)))
    return start, finish, makespan


def _check_order(model: Model, dev: list[int], order: list[list[int]]) -> None:
    for i, d in enumerate(dev):
        if d < 0 or not np.isfinite(model.cost[i, d]):
            device = model.devices[d] if d >= 0 else None
            raise PlacementError(f"unit {model.names[i]!r} cannot run on {device}; assign it a supporting device")
    listed = sorted((i, d) for d, seq in enumerate(order) for i in seq)
    if listed != sorted(enumerate(dev)):
        raise PlacementError("the per-device order must list each unit exactly once, on its assigned device")


def list_order(model: Model, dev: list[int], priority: np.ndarray) -> list[list[int]]:
    """Per-device orders from a ready list: among units whose predecessors are listed, the lowest priority first."""
    waiting = [len(p) for p in model.preds]
    heap = [(float(priority[i]), i) for i in range(model.n) if waiting[i] == 0]
    heapq.heapify(heap)
    order: list[list[int]] = [[] for _ in model.devices]
    while heap:
        _, i = heapq.heappop(heap)
        order[dev[i]].append(i)
        for e in model.succs[i]:
            j = model.edges[e][1]
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(heap, (float(priority[j]), j))
    return order


def placement_from(
    model: Model, dev: list[int], priority: np.ndarray, solver: str, started: float, gap: float | None = None
) -> Placement:
    """Order by priority, simulate, and package the result as a Placement timed from `started` (perf_counter)."""
    if not model.fits(dev):
        raise PlacementError(f"{solver}: the plan exceeds a device's capacity_bytes; raise it or use solver 'ilp'")
    start, finish, makespan = run(model, dev, list_order(model, dev, priority))
    return _placement(model, dev, start, finish, makespan, solver, gap, time.perf_counter() - started)


def _placement(
    model: Model,
    dev: list[int],
    start: np.ndarray,
    finish: np.ndarray,
    makespan: float,
    solver: str,
    gap: float | None,
    solve_s: float,
) -> Placement:
    return Placement(
        assignment={n: model.devices[dev[i]] for i, n in enumerate(model.names)},
        predicted_ms=makespan,
        solver=solver,
        gap=gap,
        solve_s=solve_s,
        start_ms={n: float(start[i]) for i, n in enumerate(model.names)},
        finish_ms={n: float(finish[i]) for i, n in enumerate(model.names)},
    )
