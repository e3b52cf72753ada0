"""Exact least-energy placement within a latency cap, as a MILP on the latency ILP's constraints (ragc.placement.ilp).

A request's energy is sum over units of (active - idle power of its device) x its time, plus the sum of idle powers
times the makespan: linear in the assignment x[u, d] and the makespan variable, so the latency formulation's rows
(assignment, precedence with transfers, per-device disjunctions, the cap as the makespan's upper bound) stay as
they are and only the objective changes. The plan is then list-scheduled by the ILP's start times, as the latency
ILP's is, and its energy computed from that schedule.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.optimize import Bounds

from ragc.errors import PlacementError
from ragc.placement.ilp import MAX_PAIRS, _confirmed_runs, _Formulation, relative_gap
from ragc.placement.model import Model
from ragc.placement.problem import Placement
from ragc.placement.simulate import placement_from

CAP_SLACK = 1e-6  # relative: the list schedule may land on the cap to rounding


def makespan_bound(model: Model) -> float:
    """An upper bound on any left-justified schedule's makespan: every unit's slowest time, every edge's slowest
    transfer and the slowest host transfers, one after another."""
    cost = np.where(np.isfinite(model.cost), model.cost, 0.0).max(axis=1).sum()
    edges = float(model.edge_delay.max(axis=(1, 2)).sum()) if model.edges else 0.0
    return float(cost + edges + model.host_in.max() + model.host_out.max()) + 1.0


def plan_energy_mj(model: Model, placement: Placement, power: np.ndarray) -> float:
    """mJ of a placement of `model` (see the module docstring)."""
    index = {d: k for k, d in enumerate(model.devices)}
    active = sum(
        (power[index[placement.assignment[n]], 0] - power[index[placement.assignment[n]], 1])
        * model.cost[i, index[placement.assignment[n]]]
        for i, n in enumerate(model.names)
    )
    return float(active + placement.predicted_ms * power[:, 1].sum())


def solve_energy(
    model: Model,
    power: np.ndarray,
    max_latency_ms: float | None,
    time_limit_s: float,
    heuristics: list[Placement] = (),
) -> Placement:
    """The least-energy plan whose predicted latency is at most `max_latency_ms` (None: no cap). `power` is
    (devices, 2): active and idle watts per device of the model. Where HiGHS proves no optimum in the time limit,
    the best of its plan and the `heuristics` plans within the cap stands, its gap from HiGHS's bound reported.
    Raises PlacementError when no plan meets the cap."""
    started = time.perf_counter()
    upper = makespan_bound(model) if max_latency_ms is None else float(max_latency_ms)
    formulation = _Formulation(model, upper)
    if len(formulation.pairs) > MAX_PAIRS:  # too large to build in time: the heuristic plans only
        return _best(model, power, max_latency_ms, list(heuristics), [], False, started)
    formulation.build()
    cost = np.zeros(formulation.ncols)
    for (i, d), col in formulation.x.items():
        cost[col] = (power[d, 0] - power[d, 1]) * model.cost[i, d]
    cost[formulation.span] = float(power[:, 1].sum())
    lower, high = np.zeros(formulation.ncols), np.ones(formulation.ncols)
    high[formulation.s] = upper
    high[formulation.span] = upper
    integrality = np.zeros(formulation.ncols)
    integrality[list(formulation.x.values()) + list(formulation.o.values())] = 1
    args = {"c": cost, "bounds": Bounds(lower, high), "constraints": [formulation.rows.constraint(formulation.ncols)]}
    runs = _confirmed_runs(args, integrality, time_limit_s - (time.perf_counter() - started))
    plans, proven = list(heuristics), False
    if runs:
        res = min(runs, key=lambda r: r.fun)
        dev = [max(model.allowed(i), key=lambda d: (res.x[formulation.x[(i, d)]], -d)) for i in range(model.n)]
        plans.insert(0, placement_from(model, dev, res.x[formulation.s], "energy", started))
        proven = res.status == 0
    return _best(model, power, max_latency_ms, plans, runs, proven, started)


def _best(
    model: Model,
    power: np.ndarray,
    max_latency_ms: float | None,
    plans: list[Placement],
    runs: list,
    proven: bool,
    started: float,
) -> Placement:
    """The least-energy plan of `plans` (the MILP's first, if it found one), its gap from the MILP's bound."""
    within = [
        p for p in plans if max_latency_ms is None or p.predicted_ms <= max_latency_ms * (1 + CAP_SLACK) + CAP_SLACK
    ]
    if not within:
        raise PlacementError(
            f"no plan meets --max-latency-ms {max_latency_ms:g}: raise it (see `ragc compile --objective latency`)"
            if max_latency_ms is not None
            else "energy: the MILP found no plan in the time limit; raise --time-limit"
        )
    best = min(within, key=lambda p: plan_energy_mj(model, p, power))
    bound = min((r.mip_dual_bound for r in runs if r.mip_dual_bound is not None), default=None)
    energy = plan_energy_mj(model, best, power)
    best.gap = 0.0 if proven and best is plans[0] else (None if bound is None else relative_gap(energy, bound))
    best.solver, best.solve_s = "energy", time.perf_counter() - started
    return best
