"""The one entry point: pick a solver and an objective, get a Placement."""

from __future__ import annotations

import time

import numpy as np

from ragc.errors import PlacementError, UsageError
from ragc.placement.baselines import solve_greedy, solve_single
from ragc.placement.energy import solve_energy
from ragc.placement.heft import solve_heft
from ragc.placement.ilp import relative_gap, solve_ilp
from ragc.placement.model import Model, build_model
from ragc.placement.problem import Placement, PlacementProblem
from ragc.placement.throughput import solve_throughput

SOLVERS = ("auto", "ilp", "heft", "greedy", "single")
OBJECTIVES = ("latency", "throughput", "energy")


def solve(
    problem: PlacementProblem,
    solver: str = "auto",
    objective: str = "latency",
    time_limit_s: float = 5.0,
    power: dict[str, tuple[float, float]] | None = None,
    max_latency_ms: float | None = None,
) -> Placement:
    """Place every unit. latency: minimise one request's makespan; throughput: minimise the slowest pipeline
    stage; energy: the least energy (from `power`, device -> active and idle W) within `max_latency_ms` if given
    (throughput and energy are exact, whatever the solver). `auto` takes the ILP's plan when it proves optimality
    within the time limit, else the best plan found, and is never predicted slower than the best single processor."""
    if solver not in SOLVERS:
        raise UsageError(f"unknown placement solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    if objective not in OBJECTIVES:
        raise UsageError(f"unknown placement objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    if objective in ("throughput", "energy") and solver not in ("auto", "ilp"):
        raise UsageError(f"objective {objective!r} is solved exactly; use solver 'auto' instead of {solver!r}")
    if max_latency_ms is not None and (objective != "energy" or not max_latency_ms > 0):
        raise UsageError("--max-latency-ms goes with --objective energy and must be > 0")
    model = build_model(problem)
    if objective == "throughput":
        return solve_throughput(model)
    if objective == "energy":
        if power is None:
            raise UsageError("objective 'energy' needs power figures: this chip's personality has no power section")
        watts = np.array([power[d] for d in model.devices], dtype=float)
        return solve_energy(model, watts, max_latency_ms, time_limit_s, _heuristic_plans(model))
    if solver in ("heft", "greedy", "single"):
        return {"heft": solve_heft, "greedy": solve_greedy, "single": solve_single}[solver](model)
    return _solve_exact(model, time_limit_s, fallback=solver == "auto")


def _solve_exact(model: Model, time_limit_s: float, fallback: bool) -> Placement:
    """The ILP bounded by the best heuristic plan; with `fallback` the best plan of all, its gap from the ILP's
    bound; without it the ILP's own plan (the heuristic one if the ILP found none in time)."""
    started = time.perf_counter()
    plans = _heuristic_plans(model)
    best = min(plans, key=lambda p: p.predicted_ms)
    result = solve_ilp(model, time_limit_s - (time.perf_counter() - started), best)
    chosen = result.placement if result.placement is not None else best
    if fallback:
        chosen = min([chosen] + plans, key=lambda p: p.predicted_ms)
    proven = result.optimal and chosen is result.placement
    chosen.gap = 0.0 if proven else relative_gap(chosen.predicted_ms, result.bound)
    chosen.solve_s = time.perf_counter() - started
    return chosen


def _heuristic_plans(model: Model) -> list[Placement]:
    """The single-device, greedy and HEFT plans that exist (capacity can rule some out)."""
    plans = []
    errors = []
    for heuristic in (solve_heft, solve_greedy, solve_single):
        try:
            plans.append(heuristic(model))
        except PlacementError as err:
            errors.append(str(err))
    if not plans:
        raise PlacementError(f"no heuristic plan fits ({'; '.join(errors)}); raise capacity_bytes or add devices")
    return plans
