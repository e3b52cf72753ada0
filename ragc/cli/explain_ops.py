"""Why each op of a plan went where it did, from a checked costs.json document (ragc.bundle.costs): per op, its
predicted ms on every processor of the chip, and for each processor not chosen the reason: it cannot run the op,
a --place rule, the plan was not compiled for it, the op is fused into another op's unit (and moves with it), or
what moving it would cost: the plan re-solved with that op's unit forced there, against the chosen plan."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ragc.bundle.costs import problem_of
from ragc.costmodel.energy import plan_energy
from ragc.errors import PlacementError
from ragc.placement import Placement, PlacementProblem, simulate, solve
from ragc.placement.candidates import device_first

MOVE_SOLVER = "auto"  # re-solves use the exact solver with a time limit each, as compile does
SOLVE_S = (0.05, 2.0)  # the least and the most seconds one re-solve gets of the budget


def moves_needed(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(unit, processor) of every re-solve: each unit to each processor of the problem that can run it."""
    return [
        (u["name"], d) for u in doc["units"] for d in doc["devices"] if d != u["device"] and u["cost_ms"][d] is not None
    ]


def explain_ops(
    doc: dict[str, Any], moves: bool = True, budget_s: float = 30.0, advance: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """The explanation as data: the plan's figures, each processor alone, the plan without --place rules (when any
    op was forced), and one entry per op. Re-solves share `budget_s`, each within SOLVE_S."""
    problem = problem_of(doc)
    chosen = _chosen(doc, problem)
    needed = moves_needed(doc) if moves else []
    each_s = min(max(budget_s / max(len(needed), 1), SOLVE_S[0]), SOLVE_S[1])
    moved: dict[tuple[str, str], tuple[float, bool] | str] = {}
    for unit, device in needed:
        moved[(unit, device)] = _moved(doc, problem, unit, device, each_s)
        if advance:
            advance(unit)
    units = {u["name"]: u for u in doc["units"]}
    ops = {op["name"]: op for op in doc["ops"]}
    rows = [_op_row(doc, op, units, ops, moved, chosen) for op in doc["ops"]]
    forced = any(op["forced"] for op in doc["ops"])
    free = problem_of(doc, _unforced_costs(doc)) if forced else problem  # each processor alone: without the rules
    baselines = {d: p.predicted_ms for d in doc["devices"] if (p := device_first(free, d)) is not None}
    return {
        "objective": doc["objective"],
        "solver": doc["solver"],
        "gap": doc["gap"],
        "placement_ms": doc["placement_ms"],
        "metric": _metric(doc),
        "chosen": chosen,
        "baselines_ms": baselines,
        "unforced_ms": _best(doc, free, min(budget_s, 5.0))[0] if forced else None,
        "moves": {
            "solver": MOVE_SOLVER,
            "time_limit_s": each_s,
            "count": len(moved),
            "unproven": sum(1 for m in moved.values() if not isinstance(m, str) and not m[1]),
        }
        if moves
        else None,
        "ops": rows,
    }


def _metric(doc: dict[str, Any]) -> str:
    """What the plan minimises: mJ per request (energy), else ms (latency, or the slowest stage of a stream)."""
    return "mJ" if doc["objective"] == "energy" else "ms"


def _power(doc: dict[str, Any]) -> dict[str, tuple[float, float]] | None:
    return {d: (w[0], w[1]) for d, w in doc["power"].items()} if doc["power"] else None


def _value(doc: dict[str, Any], problem: PlacementProblem, placement: Placement) -> float:
    if doc["objective"] == "energy" and doc["power"]:
        return plan_energy(problem, placement, _power(doc)).total_mj
    return placement.predicted_ms


def _chosen(doc: dict[str, Any], problem: PlacementProblem) -> float:
    """The chosen plan's value of the metric (energy: its assignment simulated in its order again)."""
    if doc["objective"] != "energy" or not doc["power"]:
        return doc["placement_ms"]
    start = {u["name"]: u["start_ms"] for u in doc["units"]}
    order = {d: sorted((u["name"] for u in doc["units"] if u["device"] == d), key=start.get) for d in doc["devices"]}
    return _value(doc, problem, simulate(problem, {u["name"]: u["device"] for u in doc["units"]}, order))


def _solve(doc: dict[str, Any], problem: PlacementProblem, time_limit_s: float) -> Placement:
    return solve(problem, MOVE_SOLVER, doc["objective"], time_limit_s, _power(doc), doc["max_latency_ms"])


def _moved(
    doc: dict[str, Any], problem: PlacementProblem, unit: str, device: str, time_limit_s: float
) -> tuple[float, bool] | str:
    """(value, proven optimal) of the plan re-solved with `unit` forced onto `device`, or why no such plan exists.
    The chosen plan with only that unit moved is a plan too: where the solver finds none better within its time,
    that one's value stands (not proven optimal)."""
    units = [
        replace(u, cost_ms={d: ms if d == device else math.inf for d, ms in u.cost_ms.items()}) if u.name == unit else u
        for u in problem.units
    ]
    forced = replace(problem, units=units)
    value, proven = _best(doc, forced, time_limit_s)
    if isinstance(value, str):
        return value  # no plan fits (capacity): moving the unit there is not possible
    if doc["objective"] == "throughput":  # a stream's value is its slowest stage, which a re-simulation does not give
        return value, proven
    start = {u["name"]: u["start_ms"] for u in doc["units"]}
    assignment = {u["name"]: device if u["name"] == unit else u["device"] for u in doc["units"]}
    order = {d: sorted((n for n, a in assignment.items() if a == d), key=start.get) for d in doc["devices"]}
    local = _value(doc, forced, simulate(forced, assignment, order))
    return (local, False) if local < value - 1e-12 else (value, proven)


def _unforced_costs(doc: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Unit costs without the --place rules: on the processors compiled for (and the CPU) that run all its ops."""
    devices = set(doc["compiled_devices"]) | {"cpu"}
    ops = {op["name"]: op for op in doc["ops"]}
    return {
        u["name"]: {
            d: sum(ops[o]["ms"][d] for o in u["ops"])
            if d in devices and all(ops[o]["ms"].get(d) is not None for o in u["ops"])
            else None
            for d in doc["devices"]
        }
        for u in doc["units"]
    }


def unforced_ms(doc: dict[str, Any], time_limit_s: float = 1.0) -> float | str:
    """The plan's metric without its --place rules: what automatic placement would predict."""
    return _best(doc, problem_of(doc, _unforced_costs(doc)), time_limit_s)[0]


def _best(doc: dict[str, Any], problem: PlacementProblem, time_limit_s: float) -> tuple[float | str, bool]:
    """(value, proven optimal) of the solver's plan of `problem`, or (why there is none, False)."""
    try:
        placement = _solve(doc, problem, time_limit_s)
    except PlacementError as exc:
        return str(exc).splitlines()[0], False
    return _value(doc, problem, placement), placement.gap == 0.0


def _op_row(
    doc: dict[str, Any],
    op: dict[str, Any],
    units: dict[str, dict[str, Any]],
    ops: dict[str, dict[str, Any]],
    moved: dict[tuple[str, str], tuple[float, bool] | str],
    chosen: float,
) -> dict[str, Any]:
    unit = units[op["unit"]]
    head = unit["ops"][0]
    others = {d: _why_not(doc, op, unit, ops, d, moved, chosen) for d in doc["chip_devices"] if d != unit["device"]}
    return {
        "name": op["name"],
        "op_type": op["op_type"],
        "unit": op["unit"],
        "chosen": unit["device"],
        "forced": op["forced"],
        "precision": op.get("precision", "fp32"),
        "fused_into": None if head == op["name"] else head,
        "predicted_ms": op["ms"],
        "others": others,
    }


def _why_not(
    doc: dict[str, Any],
    op: dict[str, Any],
    unit: dict[str, Any],
    ops: dict[str, dict[str, Any]],
    device: str,
    moved: dict[tuple[str, str], tuple[float, bool] | str],
    chosen: float,
) -> dict[str, Any]:
    """{"why": code, "detail": text, "plan", "delta"} for one processor the op is not on (plan and delta in the
    plan's metric)."""
    if device in op["unsupported"]:
        return _reason("unsupported", op["unsupported"][device])
    if op["forced"]:
        return _reason("forced", f"--place put it on {op['forced']}")
    if device not in doc["compiled_devices"]:
        listed = ", ".join(doc["compiled_devices"])
        if device == "cpu":
            return _reason("not-compiled", f"compiled with --devices {listed}: the CPU takes only what they cannot run")
        return _reason("not-compiled", f"the plan was compiled for {listed} (--devices)")
    if unit["cost_ms"].get(device) is None:
        return _culprit(unit, ops, device)
    result = moved.get((unit["name"], device))
    if result is None:
        return _reason("not-computed", "what moving it costs was not computed (--no-moves)")
    if isinstance(result, str):
        return _reason("does-not-fit", result)
    value, proven = result
    delta = value - chosen
    code = "fused-into" if unit["ops"][0] != op["name"] else "slower" if delta > 1e-9 else "not-slower"
    detail = _move_detail(doc, unit, op, delta, proven)
    return {"why": code, "detail": detail, "plan": value, "delta": delta, "proven": proven}


def _reason(code: str, detail: str) -> dict[str, Any]:
    return {"why": code, "detail": detail, "plan": None, "delta": None, "proven": None}


def _culprit(unit: dict[str, Any], ops: dict[str, dict[str, Any]], device: str) -> dict[str, Any]:
    """Why a fused unit cannot go to `device`: the op of it that cannot, or the rule that pins one."""
    for name in unit["ops"]:
        other = ops[name]
        if device in other["unsupported"]:
            reason = other["unsupported"][device]
            text = f"fused with {name} ({other['op_type']}), which {device} cannot run: {reason}"
            return _reason("fused-with", text) | {"with": name, "with_reason": reason}
        if other["forced"] and other["forced"] != device:
            text = f"fused with {name} ({other['op_type']}), which --place put on {other['forced']}"
            return _reason("fused-with", text) | {"with": name, "with_forced": other["forced"]}
    return _reason("fused-with", f"its unit {unit['name']} cannot run on {device}")


def _move_detail(doc: dict[str, Any], unit: dict[str, Any], op: dict[str, Any], delta: float, proven: bool) -> str:
    sign = "+" if delta >= 0 else "-"
    moving = f"{'' if proven else 'at most '}{sign}{abs(delta):.3f} {_metric(doc)} if moved"
    if unit["ops"][0] != op["name"]:
        return f"fused into {unit['ops'][0]}: {moving}"
    if delta > 1e-9:
        return moving
    return f"{moving}: kept by timing candidates on the chip, or within the solver's gap"
