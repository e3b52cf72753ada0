"""Exact makespan minimisation as a MILP solved by HiGHS (scipy.optimize.milp).

Variables: x[u,d] (unit u on device d, binary), y[e,a,b] (edge e from device a to b: the linearised product of
its endpoints' x, tight for chains), s[u] (start), span, and o[u,v] (u before v, binary) for each pair not
already ordered by the dependencies that could share a device. Big-M values come from a heuristic upper bound.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array

from ragc.placement.model import Model
from ragc.placement.problem import Placement
from ragc.placement.simulate import placement_from

MIP_REL_GAP = 1e-6
LP_SHARE = 0.25  # of the time limit the LP relaxation may take at most
# HiGHS 1.12 (scipy 1.17), checked against brute force by tests/test_placement.py and a few thousand more
# random problems: its MIP presolve returned suboptimal plans as "optimal", so it is off (no slower on these
# models). Without it, about one small problem in a few hundred still goes wrong, differently with each
# feasibility tolerance and random seed: the final check rejects an optimum that uses up the tolerance to the
# last bit ("Solve error"), a tight tolerance makes it call the problem infeasible (it never is: the heuristic
# plan satisfies it), or, rarer, it proves a suboptimal plan optimal. So an optimum is solved for twice, with
# different settings, and the better plan kept; failed runs are retried with the next settings; should all
# fail, the heuristic plan stands.
HIGHS_ATTEMPTS = (
    {"mip_feasibility_tolerance": 1e-8},
    {"mip_feasibility_tolerance": 1e-7, "random_seed": 1},
    {"mip_feasibility_tolerance": 1e-9, "random_seed": 2},
    {"random_seed": 3},
)
CONFIRMATIONS = 2
HIGHS_FAILURES = (2, 4)  # scipy.optimize.milp's statuses for "infeasible" and "solve error"
UPPER_SLACK = 1e-6  # relative and absolute: the span is bounded by the heuristic plan's makespan plus this
MAX_PAIRS = 20_000  # parallel pairs beyond which building the model alone outruns a useful time limit


@dataclass
class IlpResult:
    placement: Placement | None  # the solver's best plan (None where it found none in time)
    bound: float  # proven lower bound on the makespan
    optimal: bool  # whether the plan is proven optimal (within MIP_REL_GAP)


class _Rows:
    """Sparse constraint rows, accumulated one at a time: lb <= sum(coef * var) <= ub."""

    def __init__(self) -> None:
        self.r: list[int] = []
        self.c: list[int] = []
        self.v: list[float] = []
        self.lb: list[float] = []
        self.ub: list[float] = []

    def add(self, terms: list[tuple[int, float]], lb: float, ub: float = math.inf) -> None:
        row = len(self.lb)
        for col, val in terms:
            self.r.append(row)
            self.c.append(col)
            self.v.append(val)
        self.lb.append(lb)
        self.ub.append(ub)

    def constraint(self, ncols: int) -> LinearConstraint:
        a = coo_array((self.v, (self.r, self.c)), shape=(len(self.lb), ncols)).tocsr()
        return LinearConstraint(a, np.array(self.lb), np.array(self.ub))


class _Formulation:
    """Column layout and rows of the MILP for one model and one upper bound on the makespan."""

    def __init__(self, model: Model, upper: float) -> None:
        self.model = model
        self.upper = upper
        n = model.n
        self.x = {(i, d): k for k, (i, d) in enumerate((i, d) for i in range(n) for d in model.allowed(i))}
        col = len(self.x)
        self.s = list(range(col, col + n))
        self.span = col + n
        col = self.span + 1
        self.y: dict[tuple[int, int, int], int] = {}
        for e, (i, j) in enumerate(model.edges):
            for a in model.allowed(i):
                for b in model.allowed(j):
                    self.y[(e, a, b)] = col
                    col += 1
        ancestors, descendants = _reachability(model)
        self.pairs = _unordered_pairs(model, ancestors)
        self.windows = _windows(self.pairs, ancestors, descendants, n)
        self.o = {pair: col + k for k, pair in enumerate(self.pairs)}
        self.ncols = col + len(self.pairs)
        self.rows = _Rows()
        self.head, self.tail = _path_bounds(model)

    def per_device(self, i: int, value: np.ndarray) -> list[tuple[int, float]]:
        """Terms sum_d value[d] * x[i, d]: a quantity of unit i that depends on its device."""
        return [(self.x[(i, d)], float(value[d])) for d in self.model.allowed(i)]

    def build(self) -> None:
        m, rows = self.model, self.rows
        for i in range(m.n):
            rows.add([(self.x[(i, d)], 1.0) for d in m.allowed(i)], 1.0, 1.0)
            rows.add([(self.s[i], 1.0)] + self.per_device(i, -m.host_in[i]), 0.0)
            end = [(self.span, 1.0), (self.s[i], -1.0)]
            rows.add(end + self.per_device(i, -m.cost[i] - m.host_out[i]), 0.0)
            succ_tail = max([self.tail[m.edges[e][1]] for e in m.succs[i]], default=0.0)
            rows.add(end + self.per_device(i, -m.cost[i]), succ_tail)
        for e, (i, j) in enumerate(m.edges):
            self._edge(e, i, j)
        for d in range(len(m.devices)):
            on_d = [(self.x[(i, d)], m.cost[i, d]) for i in range(m.n) if (i, d) in self.x]
            rows.add([(self.span, 1.0)] + [(c, -v) for c, v in on_d], 0.0)
            if math.isfinite(m.capacity[d]):
                rows.add([(self.x[(i, d)], m.mem[i]) for i in range(m.n) if (i, d) in self.x], -math.inf, m.capacity[d])
        for (u, v), col in self.o.items():
            self._disjunction(u, v, col)
        for (fork, join), inside in self.windows.items():
            if (fork, join) != (None, None):  # that window is the device load row above
                self._window(fork, join, inside)

    def _edge(self, e: int, i: int, j: int) -> None:
        m, rows = self.model, self.rows
        for a in m.allowed(i):
            rows.add([(self.y[(e, a, b)], 1.0) for b in m.allowed(j)] + [(self.x[(i, a)], -1.0)], 0.0, 0.0)
        for b in m.allowed(j):
            rows.add([(self.y[(e, a, b)], 1.0) for a in m.allowed(i)] + [(self.x[(j, b)], -1.0)], 0.0, 0.0)
        delays = [(self.y[(e, a, b)], -m.edge_delay[e, a, b]) for a in m.allowed(i) for b in m.allowed(j) if a != b]
        rows.add([(self.s[j], 1.0), (self.s[i], -1.0)] + self.per_device(i, -m.cost[i]) + delays, 0.0)

    def _window(self, fork: int | None, join: int | None, inside: list[int]) -> None:
        """Valid cut: on each device, the units between a fork and its join run one at a time after the fork
        finishes (or time 0) and before the join starts (or the end)."""
        m = self.model
        begin = [] if fork is None else [(self.s[fork], -1.0)] + self.per_device(fork, -m.cost[fork])
        end = [(self.span if join is None else self.s[join], 1.0)]
        for d in range(len(m.devices)):
            load = [(self.x[(i, d)], -m.cost[i, d]) for i in inside if (i, d) in self.x]
            if len(load) > 1:
                self.rows.add(end + begin + load, 0.0)

    def _disjunction(self, u: int, v: int, o: int) -> None:
        """On every device both could use: o = 1 puts u before v, o = 0 v before u (inactive unless both there)."""
        m, rows = self.model, self.rows
        for d in sorted(set(m.allowed(u)) & set(m.allowed(v))):
            big = self.upper + max(m.cost[u, d], m.cost[v, d])
            xu, xv = self.x[(u, d)], self.x[(v, d)]
            su, sv = self.s[u], self.s[v]
            rows.add([(sv, 1.0), (su, -1.0), (o, -big), (xu, -big), (xv, -big)], m.cost[u, d] - 3 * big)
            rows.add([(su, 1.0), (sv, -1.0), (o, big), (xu, -big), (xv, -big)], m.cost[v, d] - 2 * big)

    def solve(self, time_limit_s: float) -> tuple[list[int] | None, np.ndarray | None, float, bool]:
        """(device per unit, start per unit, proven lower bound, optimal); the first two are None if none found.
        The LP relaxation, solved first, gives a bound even where the MILP stops without one."""
        started = time.perf_counter()
        m = self.model
        self.build()
        lower, upper = np.zeros(self.ncols), np.ones(self.ncols)
        integrality = np.zeros(self.ncols)
        integrality[list(self.x.values()) + list(self.o.values())] = 1
        upper[self.s] = self.upper  # tighter start bounds (head, upper - tail) made HiGHS return wrong optima
        upper[self.span] = self.upper  # no lower bound: HiGHS then rejected optima that sat on it (Solve error)
        cost = np.zeros(self.ncols)
        cost[self.span] = 1.0
        args = {"c": cost, "bounds": Bounds(lower, upper), "constraints": [self.rows.constraint(self.ncols)]}
        relaxed = milp(options={"time_limit": max(time_limit_s * LP_SHARE, 0.01), "presolve": False}, **args)
        runs = _confirmed_runs(args, integrality, time_limit_s - (time.perf_counter() - started))
        bounds = [np.max(self.head + self.tail), relaxed.fun if relaxed.status == 0 else None]
        if runs and all(r.mip_dual_bound is not None for r in runs):
            bounds.append(min(r.mip_dual_bound for r in runs))
        bound = max(float(b) for b in bounds if b is not None and math.isfinite(b))
        if not runs:
            return None, None, bound, False
        res = min(runs, key=lambda r: r.fun)
        dev = [max(m.allowed(i), key=lambda d: (res.x[self.x[(i, d)]], -d)) for i in range(m.n)]
        return dev, res.x[self.s], bound, res.status == 0


def _confirmed_runs(args: dict, integrality: np.ndarray, time_limit_s: float) -> list:
    """HiGHS results with a plan: a second run with another seed re-checks an optimum found in time, as HiGHS
    1.12 at times proves a wrong one (see HIGHS_ATTEMPTS)."""
    started = time.perf_counter()
    runs = []
    for attempt in HIGHS_ATTEMPTS:
        left = time_limit_s - (time.perf_counter() - started)
        if runs and (runs[0].status != 0 or left <= 0):
            break
        options = {"time_limit": max(left, 0.01), "mip_rel_gap": MIP_REL_GAP, "presolve": False, **attempt}
        with warnings.catch_warnings():  # milp warns that it passes these options to HiGHS verbatim, as wanted
            warnings.simplefilter("ignore", RuntimeWarning)
            res = milp(integrality=integrality, options=options, **args)
        if res.status not in HIGHS_FAILURES and res.x is not None:
            runs.append(res)
        if len(runs) == CONFIRMATIONS:
            break
    return runs


def solve_ilp(model: Model, time_limit_s: float, upper: Placement) -> IlpResult:
    """Minimise the makespan below the heuristic plan `upper` (a feasible plan: it bounds big-M and the span)."""
    started = time.perf_counter()
    formulation = _Formulation(model, upper.predicted_ms * (1 + UPPER_SLACK) + UPPER_SLACK)
    if len(formulation.pairs) > MAX_PAIRS:
        return IlpResult(None, float(np.max(formulation.head + formulation.tail)), False)
    dev, start, bound, optimal = formulation.solve(time_limit_s - (time.perf_counter() - started))
    if dev is None:
        return IlpResult(None, bound, False)
    placement = placement_from(model, dev, start, "ilp", started)
    bound = min(bound, placement.predicted_ms)
    placement.gap = relative_gap(placement.predicted_ms, bound)
    return IlpResult(placement, bound, optimal)


def relative_gap(value: float, bound: float) -> float:
    """(value - bound) / value, clamped to [0, 1]."""
    if value <= 0:
        return 0.0
    return float(min(1.0, max(0.0, (value - bound) / value)))


def _reachability(model: Model) -> tuple[list[int], list[int]]:
    """Per unit, bitsets of its ancestors and of its descendants."""
    ancestors, descendants = [0] * model.n, [0] * model.n
    for j in range(model.n):
        for e in model.preds[j]:
            ancestors[j] |= ancestors[model.edges[e][0]] | (1 << model.edges[e][0])
    for i in reversed(range(model.n)):
        for e in model.succs[i]:
            descendants[i] |= descendants[model.edges[e][1]] | (1 << model.edges[e][1])
    return ancestors, descendants


def _unordered_pairs(model: Model, ancestors: list[int]) -> list[tuple[int, int]]:
    """Pairs (u < v) with no dependency path between them that share at least one device."""
    allowed = [set(model.allowed(i)) for i in range(model.n)]
    return [(u, v) for v in range(model.n) for u in range(v) if not (ancestors[v] >> u) & 1 and allowed[u] & allowed[v]]


def _windows(
    pairs: list[tuple[int, int]], ancestors: list[int], descendants: list[int], n: int
) -> dict[tuple[int | None, int | None], list[int]]:
    """Fork-join windows around parallel units: (latest common ancestor or None, earliest common descendant or
    None) -> the units strictly between them, which must share each device one at a time."""
    everything = (1 << n) - 1
    ends = {}
    for u, v in pairs:
        common_up, common_down = ancestors[u] & ancestors[v], descendants[u] & descendants[v]
        fork = common_up.bit_length() - 1 if common_up else None
        join = (common_down & -common_down).bit_length() - 1 if common_down else None
        ends[(fork, join)] = None
    windows = {}
    for fork, join in ends:
        inside = descendants[fork] if fork is not None else everything
        inside &= ancestors[join] if join is not None else everything
        windows[(fork, join)] = [k for k in range(n) if (inside >> k) & 1]
    return windows


def _path_bounds(model: Model) -> tuple[np.ndarray, np.ndarray]:
    """Per unit: a lower bound on its start (head) and on the time from its start to the end (tail)."""
    best = model.cost.min(axis=1)
    head = np.zeros(model.n)
    for j in range(model.n):
        arrivals = [head[model.edges[e][0]] + best[model.edges[e][0]] for e in model.preds[j]]
        head[j] = max([float(model.host_in[j][np.isfinite(model.cost[j])].min())] + arrivals)
    tail = np.zeros(model.n)
    for i in reversed(range(model.n)):
        exit_ms = float((model.cost[i] + model.host_out[i])[np.isfinite(model.cost[i])].min())
        tail[i] = max([exit_ms] + [best[i] + tail[model.edges[e][1]] for e in model.succs[i]])
    return head, tail
