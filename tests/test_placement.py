"""Placement solvers against brute force on random small problems, plus the entry point's contracts."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragc.errors import PlacementError, UsageError
from ragc.placement import HOST, Edge, PlacementProblem, Unit, simulate, solve

DEVICES = ("cpu", "gpu", "npu")
TOL = 1e-6


class Link:
    """A deterministic transfer model: per ordered device pair a latency plus ms per MB."""

    def __init__(self, latency: dict[tuple[str, str], float], per_mb: dict[tuple[str, str], float]) -> None:
        self.latency, self.per_mb = latency, per_mb

    def __call__(self, src: str, dst: str, nbytes: int) -> float:
        if src == dst:
            return 0.0
        return self.latency[(src, dst)] + self.per_mb[(src, dst)] * nbytes / 1e6


@st.composite
def problems(draw, max_units: int = 8) -> PlacementProblem:
    """Random DAGs, 2..3 devices, CPU costs always finite, other devices sometimes unsupported (inf)."""
    n = draw(st.integers(2, max_units))
    devices = list(DEVICES[: draw(st.integers(2, 3))])
    cost = st.floats(0.1, 5.0).map(lambda v: round(v, 2))
    units = []
    for k in range(n):
        costs = {d: draw(cost) if d == "cpu" or draw(st.integers(0, 3)) else math.inf for d in devices}
        units.append(
            Unit(
                f"u{k}",
                [f"op{k}"],
                costs,
                host_in_bytes=draw(st.sampled_from([0, 0, 1_000_000])),
                host_out_bytes=draw(st.sampled_from([0, 0, 2_000_000])),
            )
        )
    density = draw(st.floats(0.15, 0.6))
    edges = [
        Edge(f"u{i}", f"u{j}", draw(st.integers(1, 4)) * 500_000)
        for j in range(n)
        for i in range(j)
        if draw(st.floats(0, 1)) < density
    ]
    pairs = [(a, b) for a in DEVICES for b in DEVICES if a != b]
    delay = st.floats(0.0, 1.0).map(lambda v: round(v, 2))
    link = Link({p: draw(delay) for p in pairs}, {p: draw(delay) for p in pairs})
    return PlacementProblem(units=units, edges=edges, devices=devices, transfer_ms=link)


def brute_force_makespan(problem: PlacementProblem, upper: float) -> float:
    """Least makespan over every assignment and every per-device order, under the placement model: a depth-first
    search that appends one ready unit at a time to a device, in order of start time (every semi-active
    schedule is reached that way), pruned by the best makespan so far."""
    names = [u.name for u in problem.units]
    units = {u.name: u for u in problem.units}
    preds = {n: [(e.src, e.nbytes) for e in problem.edges if e.dst == n] for n in names}
    best = upper

    def delay(a: str, b: str, nbytes: int) -> float:
        return 0.0 if a == b or nbytes == 0 else problem.transfer_ms(a, b, nbytes)

    def search(device_of: dict, finish: dict, free: dict, last_start: float, span: float) -> None:
        nonlocal best
        if len(device_of) == len(names):
            best = min(best, span)
            return
        for name in names:
            if name in device_of or any(p not in device_of for p, _ in preds[name]):
                continue
            unit = units[name]
            for d in problem.devices:
                if not math.isfinite(unit.cost_ms[d]):
                    continue
                ready = [free.get(d, 0.0), delay(HOST, d, unit.host_in_bytes)]
                ready += [finish[p] + delay(device_of[p], d, b) for p, b in preds[name]]
                start = max(ready)
                end = start + unit.cost_ms[d]
                new_span = max(span, end + delay(d, HOST, unit.host_out_bytes))
                if start < last_start - 1e-9 or new_span >= best - 1e-12:
                    continue
                search({**device_of, name: d}, {**finish, name: end}, {**free, d: end}, start, new_span)

    search({}, {}, {}, 0.0, 0.0)
    return best


def stage_time(problem: PlacementProblem, stage: list[str], device: str, device_of: dict[str, str]) -> float:
    """One pipeline stage's time, written out from the definition."""
    total = 0.0
    members = set(stage)
    for name in stage:
        unit = problem.unit(name)
        total += unit.cost_ms[device]
        if device != HOST:
            total += problem.transfer_ms(HOST, device, unit.host_in_bytes) if unit.host_in_bytes else 0.0
            total += problem.transfer_ms(device, HOST, unit.host_out_bytes) if unit.host_out_bytes else 0.0
    for e in problem.edges:
        if e.dst in members and e.src not in members:
            total += problem.transfer_ms(device_of[e.src], device, e.nbytes)
    return total


def brute_force_throughput(problem: PlacementProblem) -> float:
    """Least slowest-stage time over every cut of the unit list into stages and every injective device choice."""
    names = [u.name for u in problem.units]
    n, best = len(names), math.inf
    for k in range(1, len(problem.devices) + 1):
        for cuts in itertools.combinations(range(1, n), k - 1):
            bounds = [0, *cuts, n]
            stages = [names[a:b] for a, b in itertools.pairwise(bounds)]
            for devs in itertools.permutations(problem.devices, k):
                device_of = {u: d for s, d in zip(stages, devs, strict=True) for u in s}
                best = min(best, max(stage_time(problem, s, d, device_of) for s, d in zip(stages, devs, strict=True)))
    return best


def assert_schedule_consistent(problem: PlacementProblem, placement) -> None:
    """The reported times are the simulator's for the reported assignment, ordered by start time."""
    order: dict[str, list[str]] = {}
    index = {u.name: k for k, u in enumerate(problem.units)}
    for name in sorted(placement.assignment, key=lambda n: (placement.start_ms[n], index[n])):
        order.setdefault(placement.assignment[name], []).append(name)
    again = simulate(problem, placement.assignment, order)
    assert again.predicted_ms == pytest.approx(placement.predicted_ms, rel=1e-9, abs=1e-9)
    for name, device in placement.assignment.items():
        assert math.isfinite(problem.unit(name).cost_ms[device])


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(problems(max_units=10))
def test_ilp_matches_brute_force_and_bounds_heuristics(problem: PlacementProblem) -> None:
    ilp = solve(problem, solver="ilp")
    plans = {name: solve(problem, solver=name) for name in ("heft", "greedy", "single", "auto")}
    optimum = brute_force_makespan(problem, plans["heft"].predicted_ms + 1e-9)
    assert ilp.predicted_ms == pytest.approx(optimum, rel=TOL, abs=TOL)
    assert ilp.gap is not None and ilp.gap <= TOL
    for plan in plans.values():
        assert plan.predicted_ms >= optimum - TOL
        assert_schedule_consistent(problem, plan)
    assert plans["auto"].predicted_ms <= plans["single"].predicted_ms + 1e-12
    assert plans["auto"].predicted_ms == pytest.approx(optimum, rel=TOL, abs=TOL)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(problems(max_units=12))
def test_throughput_matches_brute_force(problem: PlacementProblem) -> None:
    plan = solve(problem, objective="throughput")
    assert plan.predicted_ms == pytest.approx(brute_force_throughput(problem), rel=1e-9, abs=1e-9)
    assert plan.stages is not None and [n for s in plan.stages for n in s] == [u.name for u in problem.units]
    devices = [plan.assignment[s[0]] for s in plan.stages]
    assert len(set(devices)) == len(devices)
    assert all(plan.assignment[n] == d for s, d in zip(plan.stages, devices, strict=True) for n in s)
    device_of = plan.assignment
    slowest = max(stage_time(problem, s, device_of[s[0]], device_of) for s in plan.stages)
    assert slowest == pytest.approx(plan.predicted_ms, rel=1e-9, abs=1e-9)


def _fork(costs_b: dict[str, float], transfer: float = 0.1) -> PlacementProblem:
    """a -> (b, c) -> d: two independent branches."""
    cheap = {"cpu": 1.0, "gpu": 1.0}
    units = [
        Unit("a", ["a"], dict(cheap)),
        Unit("b", ["b"], costs_b),
        Unit("c", ["c"], {"cpu": 4.0, "gpu": 4.0}),
        Unit("d", ["d"], dict(cheap)),
    ]
    edges = [Edge("a", "b", 1), Edge("a", "c", 1), Edge("b", "d", 1), Edge("c", "d", 1)]
    return PlacementProblem(units, edges, ["cpu", "gpu"], lambda s, t, n: 0.0 if s == t else transfer)


def test_independent_branches_run_in_parallel() -> None:
    plan = solve(_fork({"cpu": 4.0, "gpu": 4.0}), solver="ilp")
    assert plan.assignment["b"] != plan.assignment["c"]
    assert plan.predicted_ms == pytest.approx(1 + 0.1 + 4 + 1)  # a, transfer, b || c, d beside the later one
    assert plan.gap == pytest.approx(0.0, abs=TOL)


def test_unsupported_device_is_never_used() -> None:
    plan = solve(_fork({"cpu": 4.0, "gpu": math.inf}), solver="auto")
    assert plan.assignment["b"] == "cpu"


def test_capacity_is_respected() -> None:
    problem = _fork({"cpu": 4.0, "gpu": 4.0})
    for unit in problem.units:
        unit.mem_bytes = 100
    problem.capacity_bytes = {"gpu": 100}
    for solver in ("auto", "ilp", "heft", "greedy"):
        plan = solve(problem, solver=solver)
        assert sum(1 for d in plan.assignment.values() if d == "gpu") <= 1, solver
    problem.capacity_bytes = {"gpu": 50}
    assert set(solve(problem).assignment.values()) == {"cpu"}


def test_same_problem_same_plan() -> None:
    problem = _fork({"cpu": 4.0, "gpu": 3.0})
    first, second = solve(problem), solve(problem)
    assert (first.assignment, first.start_ms, first.predicted_ms) == (
        second.assignment,
        second.start_ms,
        second.predicted_ms,
    )


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"solver": "magic"}, UsageError),
        ({"objective": "energy"}, UsageError),
        ({"objective": "throughput", "solver": "heft"}, UsageError),
    ],
)
def test_bad_options_raise_one_line_errors(kwargs: dict, error: type) -> None:
    with pytest.raises(error) as caught:
        solve(_fork({"cpu": 1.0, "gpu": 1.0}), **kwargs)
    assert "\n" not in str(caught.value)


def test_bad_problems_raise_placement_errors() -> None:
    nowhere = PlacementProblem([Unit("a", ["a"], {"cpu": math.inf})], [], ["cpu"], lambda s, t, n: 0.0)
    backwards = PlacementProblem(
        [Unit("a", ["a"], {"cpu": 1.0}), Unit("b", ["b"], {"cpu": 1.0})],
        [Edge("b", "a", 1)],
        ["cpu"],
        lambda s, t, n: 0.0,
    )
    for problem, words in ((nowhere, "can run on none"), (backwards, "topological order")):
        with pytest.raises(PlacementError, match=words):
            solve(problem)
