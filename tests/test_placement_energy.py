"""The energy objective against brute force on random small problems (every assignment, every order), with and
without a latency cap, plus its refusals and the plan energy the bundle reports."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_placement import brute_force_makespan, problems

from ragc.costmodel.energy import plan_energy
from ragc.errors import PlacementError, UsageError
from ragc.placement import PlacementProblem, solve

POWER = {"cpu": (10.0, 1.0), "gpu": (14.0, 0.5), "npu": (1.6, 0.1)}
TOL = 1e-6


def brute_force_energy(problem: PlacementProblem, power: dict, cap: float) -> float:
    """Least energy over every assignment whose least makespan (over every order) is within `cap`."""
    idle = sum(power[d][1] for d in problem.devices)
    choices = [[d for d in problem.devices if math.isfinite(u.cost_ms[d])] for u in problem.units]
    best = math.inf
    for devices in itertools.product(*choices):
        units = [
            dataclasses.replace(u, cost_ms={d: (u.cost_ms[d] if d == dev else math.inf) for d in problem.devices})
            for u, dev in zip(problem.units, devices, strict=True)
        ]
        span = brute_force_makespan(dataclasses.replace(problem, units=units), math.inf)  # (a bound: returned)
        if span <= cap + 1e-9:
            active = sum(
                (power[d][0] - power[d][1]) * u.cost_ms[d] for u, d in zip(problem.units, devices, strict=True)
            )
            best = min(best, active + idle * span)
    return best


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(problems(max_units=5), st.floats(1.0, 1.6))
def test_energy_matches_brute_force(problem: PlacementProblem, slack: float) -> None:
    power = {d: POWER[d] for d in problem.devices}
    fastest = solve(problem, solver="ilp").predicted_ms
    for cap in (None, fastest * slack):
        plan = solve(problem, objective="energy", power=power, max_latency_ms=cap)
        energy = plan_energy(problem, plan, power).total_mj
        optimum = brute_force_energy(problem, power, math.inf if cap is None else cap)
        assert energy == pytest.approx(optimum, rel=1e-5, abs=1e-5)
        if cap is not None:
            assert plan.predicted_ms <= cap * (1 + TOL) + TOL


def test_energy_trades_latency_for_watts_within_the_cap() -> None:
    """Two units: the NPU is slower but draws far less; with room it takes both, under a tight cap it cannot."""
    from ragc.placement import Unit

    units = [Unit("a", ["a"], {"cpu": 1.0, "npu": 3.0}), Unit("b", ["b"], {"cpu": 1.0, "npu": 3.0})]
    problem = PlacementProblem(units=units, edges=[], devices=["cpu", "npu"], transfer_ms=lambda s, d, n: 0.0)
    power = {"cpu": POWER["cpu"], "npu": POWER["npu"]}
    loose = solve(problem, objective="energy", power=power)
    assert set(loose.assignment.values()) == {"npu"}
    tight = solve(problem, objective="energy", power=power, max_latency_ms=2.0)
    assert tight.predicted_ms <= 2.0 and "cpu" in tight.assignment.values()
    with pytest.raises(PlacementError, match="no plan meets --max-latency-ms 0.5"):
        solve(problem, objective="energy", power=power, max_latency_ms=0.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"objective": "energy"}, "needs power figures"),
        ({"objective": "latency", "max_latency_ms": 3.0}, "goes with --objective energy"),
        ({"objective": "energy", "power": POWER, "max_latency_ms": -1.0}, "must be > 0"),
        ({"objective": "energy", "power": POWER, "solver": "heft"}, "solved exactly"),
    ],
)
def test_bad_energy_options_are_one_line_errors(kwargs: dict, message: str) -> None:
    from ragc.placement import Unit

    problem = PlacementProblem([Unit("a", ["a"], {"cpu": 1.0})], [], ["cpu"], lambda s, d, n: 0.0)
    with pytest.raises(UsageError, match=message):
        solve(problem, **kwargs)
