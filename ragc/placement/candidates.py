"""Candidate plans for the tuner to time on the chip (as TensorRT's builder times tactics): the solver's optimum,
the optimum under pessimistic glue, HEFT's plan, and each processor first (GPU-first, NPU-first, CPU only), each
with the model's prediction; for streams, the pipeline optimum with each processor's times scaled by the model's
error on real models, either way. Identical assignments are kept once, under the first name."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ragc.placement.model import build_model
from ragc.placement.problem import Placement, PlacementProblem
from ragc.placement.simulate import simulate
from ragc.placement.solve import solve
from ragc.placement.throughput import repriced

PESSIMISM = 3.0  # the glue between processors costs this many times its prediction in the "pessimistic" candidate
# A stream's stages balance only as well as their predictions: the profile alone predicted real exports' plans
# 3-59 % off on the H200 (2026-12-04), so stream candidates move the cut as if one processor were that much off.
STAGE_ERRORS = (0.7, 1.4)


@dataclass
class Candidate:
    name: str
    placement: Placement

    @property
    def boundaries(self) -> int:
        """How many processor changes the plan has (fewer is simpler: a boundary must pay for itself)."""
        return len(set(self.placement.assignment.values())) - 1


def device_first(problem: PlacementProblem, device: str) -> Placement | None:
    """Every unit `device` can run there, the rest on the CPU; None when a --place rule forbids that."""
    assignment = {u.name: device if problem.supported(u, device) else "cpu" for u in problem.units}
    return assigned(problem, assignment, f"{device}-first" if device != "cpu" else "cpu-only")


def assigned(problem: PlacementProblem, assignment: dict[str, str], name: str) -> Placement | None:
    """The plan of a given assignment (units in graph order on each device), or None when it does not fit the
    problem (other units, or a device that cannot run one of them)."""
    units = {u.name: u for u in problem.units}
    if set(assignment) != set(units) or any(not problem.supported(units[n], d) for n, d in assignment.items()):
        return None
    order = {d: [u.name for u in problem.units if assignment[u.name] == d] for d in problem.devices}
    placement = simulate(problem, assignment, order)
    placement.solver = name
    return placement


def shifted_pipelines(problem: PlacementProblem) -> list[Placement]:
    """The pipeline optimum with one processor's predicted times scaled by each of STAGE_ERRORS, priced again with
    the real predictions (so the tuner can find the cut the model misplaced)."""
    if len(problem.devices) < 2:
        return []
    real, plans = build_model(problem), []
    for device in problem.devices:
        for factor in STAGE_ERRORS:
            units = [
                replace(u, cost_ms=u.cost_ms | {device: u.cost_ms.get(device, math.inf) * factor})
                for u in problem.units
            ]
            plan = repriced(real, solve(replace(problem, units=units), "auto", "throughput"))
            plan.solver = f"stream-{device}-x{factor}"
            plans.append(plan)
    return plans


def candidates(
    problem: PlacementProblem, chosen: Placement, objective: str, time_limit_s: float, kept: dict[str, str] | None
) -> list[Candidate]:
    """The plans worth timing, the solver's own first and the one kept last time for this model last (so a recompile
    after the cost model learnt more can never keep a plan slower than before); throughput plans get the
    single-processor ones beside the solver's."""
    found = [Candidate("solver", chosen)]
    if objective == "latency":
        found.append(Candidate("heft", solve(problem, "heft", objective)))
        pessimistic = replace(problem, transfer_ms=lambda s, d, n: PESSIMISM * problem.transfer_ms(s, d, n))
        plan = solve(pessimistic, "auto", objective, min(time_limit_s, 2.0))
        order = {
            d: [u for u in sorted(plan.start_ms, key=plan.start_ms.get) if plan.assignment[u] == d]
            for d in problem.devices
        }
        again = simulate(problem, plan.assignment, order)  # predicted with the real glue
        again.solver = "pessimistic"
        found.append(Candidate("pessimistic", again))
    if objective == "throughput":
        found += [Candidate(p.solver, p) for p in shifted_pipelines(problem)]
    for device in problem.devices:
        plan = device_first(problem, device)
        if plan is not None and math.isfinite(plan.predicted_ms):
            found.append(Candidate(plan.solver, plan))
    previous = assigned(problem, kept, "previous") if kept else None
    if previous is not None:  # last: where it equals another candidate, that one's name stays (same bundle)
        found.append(Candidate("previous", previous))
    unique: list[Candidate] = []
    for cand in found:
        if all(cand.placement.assignment != other.placement.assignment for other in unique):
            unique.append(cand)
    return unique
