"""`ragc explain MODEL`'s placement side: the model placed in memory (no code generation) for a target or this
chip, the chosen plan against each processor first, then the NPU's side of it: which ops it cannot run (and why),
what its kernels cost against its launches (host syncs, context switches between xclbins), and whether it is in
the plan. Every figure is the cost model's prediction."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from ragc.cli.output import console, table


def place(model: Path, shapes: dict, target: str | None, objective: str, devices: str | None, cap: float | None):
    """A Compilation of `model` taken through the front end, the personality and placement only."""
    from ragc.compilation import Compilation, CompileOptions
    from ragc.pipeline import frontend, personality, placement

    options = CompileOptions(shapes=shapes, target=target, objective=objective, devices=devices, max_latency_ms=cap)
    c = Compilation(model, Path(tempfile.gettempdir()) / "ragc-explain-never-written", options)
    for stage in (frontend, personality, placement):
        stage(c)
    return c


def _ops(c) -> Counter:
    return Counter(c.placement.assignment[u.name] for u in c.problem.units for _ in u.ops)


def _energy(c) -> float | None:
    from ragc.costmodel.energy import plan_energy, power_figures

    power = power_figures(c.personality.data, c.problem.devices)
    return None if power is None else plan_energy(c.problem, c.placement, power).total_mj


def plan_row(label: str, c) -> dict[str, Any]:
    """One plan of the model: its processors (op counts), predicted ms and energy."""
    return {"plan": label, "ops": dict(sorted(_ops(c).items())), "predicted_ms": c.placement.predicted_ms,
            "energy_mj": _energy(c)}  # fmt: skip


def npu_breakdown(graph, timing) -> dict:
    """The NPU's side of a graph: ops it cannot run by reason, and its kernels against its launches when it takes
    every op it can (in graph order, as one partition would run them)."""
    import codegen.npu

    refused = Counter()
    for op in graph.ops:
        reason = codegen.npu.unsupported_reason(graph, op)
        if reason:
            refused[f"{op.op_type}: {reason}"] += 1
    steps = [s for ops in codegen.npu.plan_ops(graph, timing).values() for s in ops if "kernel" in s]
    xclbins = [s["kernel"]["xclbin"] for s in steps]
    switches = sum(a != b for a, b in zip(xclbins, xclbins[1:], strict=False))
    return {
        "refused": refused,
        "kernels_ms": sum(s["simulated_ms"] for s in steps),
        "steps": len(steps),
        "commands_ms": len(steps) * timing.launch_costs.runlist_entry_ms,
        "switches": switches,
        "switches_ms": switches * timing.switch_ms(),
        "xclbins": len(set(xclbins)),
    }


def model_analysis(chosen, first: dict[str, Any]) -> dict[str, Any]:
    """The chosen plan against each processor first (`first`: device -> its Compilation), and the NPU's side."""
    from ragc.costmodel.npu import XdnaTiming

    rows = [plan_row(f"chosen ({chosen.options.objective})", chosen)]
    rows += [plan_row(f"{device} first", c) for device, c in first.items()]
    result: dict[str, Any] = {"plans": rows, "npu": None}
    if "npu" not in chosen.devices:
        return result
    timing = XdnaTiming.from_params(chosen.personality.data.get("npu"))
    facts = npu_breakdown(chosen.loaded.graph, timing)
    total = sum(_ops(chosen).values())
    used = _ops(chosen).get("npu", 0)
    if used:
        verdict = f"the NPU is in the plan: {used} ops, where its kernels plus launches beat the alternatives"
    elif facts["switches_ms"] > facts["kernels_ms"]:
        verdict = "the NPU is not in the plan: its context switches and launches outweigh its kernels"
    else:
        verdict = "the NPU is not in the plan: the other processors finish its share sooner"
    result["npu"] = facts | {
        "refused": dict(facts["refused"].most_common()),
        "array": timing.describe(),
        "takes": total - sum(facts["refused"].values()),
        "ops": total,
        "used": used,
        "verdict": verdict + ("" if used else " (see the 'npu first' row)"),
    }
    return result


def show_model_analysis(model: Path, chip: str, analysis: dict[str, Any]) -> None:
    out = console()
    plans = table("plan", "processors (ops)", "predicted ms", "energy mJ", title=f"{model.name} on {chip}",
                  right=("predicted ms", "energy mJ"))  # fmt: skip
    for row in analysis["plans"]:
        ops = ", ".join(f"{d} {n}" for d, n in row["ops"].items())
        mj = "-" if row["energy_mj"] is None else f"{row['energy_mj']:.3f}"
        plans.add_row(row["plan"], ops, f"{row['predicted_ms']:.3f}", mj)
    out.print(plans)
    npu = analysis["npu"]
    if npu is None:
        out.print("this chip has no NPU in its personality (or the plan was not allowed to use it)")
        return
    array = npu["array"]
    peaks = ", ".join(f"{d} {v} TOPS" for d, v in array["peak_tops"].items())
    out.print(f"NPU model: {array['arch']}, {array['tiles']} tiles, peak {peaks}, DDR {array['ddr_gbps']} GB/s")
    out.print(
        f"NPU: takes {npu['takes']} of {npu['ops']} ops; on its own it would run {npu['steps']} kernels "
        f"({npu['kernels_ms']:.3f} ms) from {npu['xclbins']} xclbins, paying {npu['switches']} context switches "
        f"({npu['switches_ms']:.3f} ms) and {npu['commands_ms']:.3f} ms of commands, plus one host sync per launch"
    )
    for reason, count in list(npu["refused"].items())[:3]:
        out.print(f"  not on the NPU ({count} ops): {reason}")
    out.print(npu["verdict"])
