"""Placement solvers against brute force on random small problems, plus the entry point's contracts."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

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

    def __repr__(self) -> str:  # failing examples print it, so they can be rebuilt
        return f"Link({self.latency!r}, {self.per_mb!r})"

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


ILP_FALLBACKS: list[PlacementProblem] = []


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(problems(max_units=10))
def test_ilp_matches_brute_force_and_bounds_heuristics(problem: PlacementProblem) -> None:
    ilp = solve(problem, solver="ilp", time_limit_s=60.0)  # a loaded 2-core box must not turn a proof into a gap
    plans = {name: solve(problem, solver=name, time_limit_s=60.0) for name in ("heft", "greedy", "single", "auto")}
    optimum = brute_force_makespan(problem, plans["heft"].predicted_ms + 1e-9)
    assert ilp.predicted_ms == pytest.approx(optimum, rel=TOL, abs=TOL)
    if ilp.solver != "ilp":  # all HiGHS attempts failed (rare, more so on a loaded box): the heuristic stood
        ILP_FALLBACKS.append(problem)
    assert len(ILP_FALLBACKS) <= 2, "HiGHS failed on more than 2 of 150 small problems"
    assert ilp.gap is not None and (ilp.solver != "ilp" or ilp.gap <= TOL)
    for plan in plans.values():
        assert plan.predicted_ms >= optimum - TOL
        assert_schedule_consistent(problem, plan)
    assert plans["auto"].predicted_ms <= plans["single"].predicted_ms + 1e-12
    assert plans["auto"].predicted_ms == pytest.approx(optimum, rel=TOL, abs=TOL)


INF = math.inf
HIGHS_TRAPS = [  # problems on which HiGHS once returned a wrong "optimal" plan or failed (see ragc/placement/ilp.py)
    (
        [
            {"cpu": 1.0, "gpu": 5.0},
            {"cpu": 0.12, "gpu": INF},
            {"cpu": 3.25, "gpu": 1.25},
            {"cpu": 2.12, "gpu": 0.44},
            {"cpu": 5.0, "gpu": 5.0},
            {"cpu": 0.12, "gpu": INF},
            {"cpu": 3.5, "gpu": 0.75},
            {"cpu": 3.5, "gpu": 5.0},
        ],
        {6: (0, 4)},
        [(0, 3, 1), (2, 3, 1), (1, 4, 4), (0, 5, 1), (1, 5, 1), (4, 6, 3), (0, 7, 1), (3, 7, 1), (5, 7, 1)],
        {("cpu", "gpu"): (1.0, 0.5), ("gpu", "cpu"): (0.5, 0.5)},
        9.37,
    ),
    (
        [
            {"cpu": 1.01},
            {"cpu": 2.8, "gpu": 2.13, "npu": 1.5},
            {"cpu": 5.0, "npu": 1.37},
            {"cpu": 0.99},
            {"cpu": 1.03, "gpu": 4.36},
            {"cpu": 0.5, "npu": 0.33},
            {"cpu": 1.0, "gpu": 2.06, "npu": 4.94},
            {"cpu": 1.02, "gpu": 3.03},
            {"cpu": 0.38, "npu": 0.5},
            {"cpu": 4.16, "gpu": 4.28, "npu": 3.89},
        ],
        {1: (0, 4)},
        [
            (0, 1, 1),
            (0, 2, 1),
            (0, 3, 1),
            (0, 4, 1),
            (1, 4, 4),
            (2, 4, 1),
            (0, 5, 1),
            (1, 5, 1),
            (2, 5, 4),
            (4, 5, 2),
            (1, 6, 1),
            (2, 6, 1),
            (3, 6, 1),
            (4, 6, 1),
            (0, 7, 1),
            (1, 7, 1),
            (2, 7, 1),
            (4, 7, 1),
            (5, 7, 1),
            (6, 7, 1),
            (0, 8, 1),
            (1, 8, 1),
            (4, 8, 1),
            (5, 8, 1),
            (6, 8, 1),
            (0, 9, 1),
            (1, 9, 2),
            (3, 9, 1),
            (5, 9, 1),
            (6, 9, 2),
            (7, 9, 3),
            (8, 9, 4),
        ],
        {
            ("cpu", "npu"): (0.25, 0.25),
            ("gpu", "cpu"): (0.55, 0.11),
            ("npu", "cpu"): (0.16, 0.0),
            ("cpu", "gpu"): (0.0, 0.62),
            ("npu", "gpu"): (0.0, 0.12),
        },
        11.445,
    ),
    (
        [
            {"cpu": 0.1, "gpu": 3.46, "npu": 0.44},
            {"cpu": 0.2, "npu": 4.19},
            {"cpu": 0.96, "gpu": 0.16, "npu": 1.83},
            {"cpu": 0.96},
            {"cpu": 4.16},
            {"cpu": 2.76, "gpu": 0.28},
            {"cpu": 1.45, "gpu": 4.0, "npu": 3.36},
            {"cpu": 4.99, "npu": 3.16},
            {"cpu": 4.99, "gpu": 4.63, "npu": 1.49},
            {"cpu": 4.36, "gpu": 5.0},
        ],
        {0: (2, 0), 9: (2, 0)},
        [
            (0, 2, 1),
            (0, 4, 2),
            (1, 4, 4),
            (2, 4, 3),
            (4, 6, 1),
            (0, 7, 3),
            (2, 7, 3),
            (3, 7, 4),
            (6, 7, 2),
            (0, 8, 1),
            (1, 8, 2),
            (3, 8, 4),
            (4, 8, 1),
            (5, 8, 1),
            (6, 8, 1),
            (7, 8, 2),
            (0, 9, 1),
            (1, 9, 2),
            (4, 9, 2),
            (7, 9, 1),
            (8, 9, 3),
        ],
        {
            ("cpu", "gpu"): (0.0, 0.76),
            ("cpu", "npu"): (0.44, 0.91),
            ("gpu", "cpu"): (0.0, 0.07),
            ("gpu", "npu"): (0.72, 0.88),
            ("npu", "cpu"): (0.9, 0.0),
            ("npu", "gpu"): (0.0, 0.79),
        },
        18.13,
    ),
    (
        [
            {"cpu": 1.6},
            {"cpu": 0.25, "gpu": 2.82},
            {"cpu": 0.68, "gpu": 2.12},
            {"cpu": 0.1},
            {"cpu": 4.01},
            {"cpu": 2.18, "gpu": 4.7},
            {"cpu": 2.0, "gpu": 4.15},
            {"cpu": 1.56, "gpu": 4.7},
        ],
        {7: (2, 0)},
        [
            (0, 1, 1),
            (0, 2, 2),
            (1, 2, 3),
            (0, 3, 2),
            (2, 3, 1),
            (0, 4, 3),
            (1, 4, 2),
            (3, 4, 1),
            (0, 5, 2),
            (1, 5, 2),
            (2, 5, 2),
            (0, 6, 1),
            (3, 6, 1),
            (4, 6, 1),
            (5, 6, 1),
            (0, 7, 1),
            (1, 7, 1),
            (4, 7, 4),
            (5, 7, 1),
        ],
        {("cpu", "gpu"): (0.88, 0.51), ("gpu", "cpu"): (0.58, 0.61)},
        12.38,
    ),
    (
        [
            {"cpu": 4.0, "gpu": 0.38},
            {"cpu": 1.0},
            {"cpu": 0.1},
            {"cpu": 4.0, "gpu": 2.66},
            {"cpu": 2.94, "gpu": 4.0},
            {"cpu": 4.19, "gpu": 3.44},
            {"cpu": 5.0},
            {"cpu": 1.09, "gpu": 2.0},
            {"cpu": 2.0},
        ],
        {5: (0, 4)},
        [
            (0, 1, 1),
            (0, 2, 1),
            (1, 2, 1),
            (0, 3, 1),
            (1, 4, 1),
            (3, 4, 1),
            (0, 5, 1),
            (3, 5, 1),
            (4, 5, 3),
            (0, 6, 1),
            (1, 6, 1),
            (2, 6, 1),
            (1, 7, 1),
            (6, 7, 1),
            (0, 8, 1),
            (3, 8, 1),
        ],
        {("gpu", "cpu"): (0.25, 0.88)},
        12.49,
    ),
]


@pytest.mark.parametrize(("costs", "host", "edges", "links", "optimum"), HIGHS_TRAPS)
def test_ilp_is_exact_where_highs_once_was_not(costs, host, edges, links, optimum) -> None:
    """Sizes in units of 500 kB; host maps a unit to its (input, output) sizes; links map a device pair to
    (latency, ms per MB)."""
    devices = sorted({d for c in costs for d in c}, key=DEVICES.index)
    units = []
    for k, c in enumerate(costs):
        host_in, host_out = host.get(k, (0, 0))
        units.append(
            Unit(
                f"u{k}",
                [f"op{k}"],
                {d: c.get(d, INF) for d in devices},
                host_in_bytes=host_in * 500_000,
                host_out_bytes=host_out * 500_000,
            )
        )
    pairs = [(a, b) for a in DEVICES for b in DEVICES if a != b]
    link = Link({p: links.get(p, (0.0, 0.0))[0] for p in pairs}, {p: links.get(p, (0.0, 0.0))[1] for p in pairs})
    problem = PlacementProblem(units, [Edge(f"u{s}", f"u{t}", n * 500_000) for s, t, n in edges], devices, link)
    assert brute_force_makespan(problem, math.inf) == pytest.approx(optimum)
    plan = solve(problem, solver="ilp")
    assert plan.solver == "ilp" and plan.predicted_ms == pytest.approx(optimum)


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
    pipeline = solve(problem, objective="throughput")
    assert pipeline.stages and all(len(s) == 1 for s in pipeline.stages if pipeline.assignment[s[0]] == "gpu")
    problem.capacity_bytes = {"gpu": 50}
    assert set(solve(problem).assignment.values()) == {"cpu"}
    assert set(solve(problem, objective="throughput").assignment.values()) == {"cpu"}


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


def test_graph_inputs_and_outputs_start_no_partition() -> None:
    """An edge into another processor pays the consumer's launch; the host's inputs and outputs pay only their
    copies (host_transfer_ms): a GPU-first resnet18 on the H200 was predicted 0.098 ms long for a CPU launch that
    no CPU partition pays (2026-12-04)."""
    units = [Unit("a", ["a"], {"cpu": 5.0, "gpu": 1.0}, host_in_bytes=1000), Unit("b", ["b"], {"cpu": 5.0, "gpu": 1.0})]
    units[1].host_out_bytes = 1000
    launch = {"cpu": 0.5, "gpu": 0.0}

    def copies(s: str, t: str, n: int) -> float:
        return 0.0 if s == t else 0.1

    problem = PlacementProblem(
        units, [Edge("a", "b", 10)], ["cpu", "gpu"], lambda s, t, n: copies(s, t, n) + launch[t], {}, copies
    )
    assert solve(problem, solver="ilp").predicted_ms == pytest.approx(0.1 + 1.0 + 1.0 + 0.1)
    charged = replace(problem, host_transfer_ms=None)  # without it, the output's copy also pays a CPU launch
    assert solve(charged, solver="ilp").predicted_ms == pytest.approx(0.1 + 1.0 + 1.0 + 0.1 + 0.5)
