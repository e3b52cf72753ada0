"""Energy of a plan from per-processor power figures (a target's or personality's `power` section): each processor
draws its active power while it runs units and its idle power for the rest of the request. Transfers and DRAM
are not counted (no figures for them); every energy is a prediction, like the times it is made of."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ragc.errors import UsageError
from ragc.placement.problem import Placement, PlacementProblem

Power = dict[str, tuple[float, float]]  # device -> (active W, idle W)


@dataclass(frozen=True)
class Energy:
    total_mj: float
    idle_mj: float  # every processor's idle power over the time it is not running units
    units_mj: dict[str, float]  # unit name -> active energy of running it


def power_figures(data: dict[str, Any], devices: list[str]) -> Power | None:
    """(active W, idle W) per device from a personality's `power` section, None when it has none."""
    section = data.get("power")
    if not section:
        return None
    missing = [d for d in devices if d not in section]
    if missing:
        raise UsageError(f"the power section has no figures for {', '.join(missing)}; add active_w and idle_w")
    return {d: (float(section[d]["active_w"]), float(section[d]["idle_w"])) for d in devices}


def plan_energy(problem: PlacementProblem, placement: Placement, power: Power) -> Energy:
    """mJ of one request of `placement` (W x ms = mJ)."""
    units = {u.name: u.cost_ms[placement.assignment[u.name]] for u in problem.units}
    busy = dict.fromkeys(problem.devices, 0.0)
    for name, ms in units.items():
        busy[placement.assignment[name]] += ms
    span = max(placement.finish_ms.values(), default=0.0) if placement.stages else placement.predicted_ms
    unit_mj = {name: power[placement.assignment[name]][0] * ms for name, ms in units.items()}
    idle_mj = sum(power[d][1] * max(0.0, span - busy[d]) for d in problem.devices)
    return Energy(sum(unit_mj.values()) + idle_mj, idle_mj, unit_mj)


def add_partition_energy(
    schedule: dict[str, Any], problem: PlacementProblem, placement: Placement, power: Power | None
) -> None:
    """Each partition's predicted active energy (its units' time at its processor's active power)."""
    if power is None:
        return
    energy = plan_energy(problem, placement, power)
    unit_of = {op: unit.name for unit in problem.units for op in unit.ops}
    for entry in schedule["partitions"]:
        units = {unit_of[op] for op in entry["ops"]}
        entry["predicted_energy_mj"] = round(sum(energy.units_mj[u] for u in units), 6)


def energy_info(
    problem: PlacementProblem, placement: Placement, power: Power | None, baselines: dict[str, Placement]
) -> dict[str, Any]:
    """The manifest's energy fields: the plan's predicted mJ per request, its idle share, each processor alone."""
    if power is None:
        return {}
    energy = plan_energy(problem, placement, power)
    return {
        "energy_mj": round(energy.total_mj, 6),
        "idle_energy_mj": round(energy.idle_mj, 6),
        "baselines_energy_mj": {d: round(plan_energy(problem, p, power).total_mj, 6) for d, p in baselines.items()},
    }
