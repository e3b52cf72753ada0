"""`ragc explain MODEL`: why the placement is what it is, for a target or this chip: the chosen plan against each
processor alone, then the NPU's side of it: which ops it cannot run (and why), what its kernels cost against its
launches (host syncs, context switches between xclbins), and what the plan would cost with the NPU taking every
op it can, or none. Placement only, no code generation; every figure is the cost model's prediction."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table


def _plan(model: Path, shapes: dict, target: str | None, objective: str, devices: str | None, cap: float | None):
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


def _row(table: Table, label: str, c) -> None:
    ops = ", ".join(f"{d} {n}" for d, n in sorted(_ops(c).items()))
    mj = _energy(c)
    table.add_row(label, ops, f"{c.placement.predicted_ms:.3f}", "-" if mj is None else f"{mj:.3f}")


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


@click.command("explain")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--target", help="A chip that is not here: a name in ragc/targets/ or a target/personality file.")
@click.option("--objective", default="latency", show_default=True, help="latency, throughput or energy.")
@click.option("--max-latency-ms", type=float, help="With --objective energy: the latency cap.")
@click.option("--shape", "shapes", multiple=True, metavar="NAME=AxBxC", help="Static shape for an input.")
def explain(model: Path, target: str | None, objective: str, max_latency_ms: float | None, shapes: tuple) -> None:
    """Say why MODEL is placed as it is (and why the NPU is or is not in the plan)."""
    from ragc.costmodel.npu import XdnaTiming
    from ragc.frontend import parse_shapes

    console = Console()
    chosen = _plan(model, parse_shapes(shapes), target, objective, None, max_latency_ms)
    devices = chosen.devices
    table = Table(
        "plan", "processors (ops)", "predicted ms", "energy mJ", title=f"{model.name} on {chosen.personality.chip_id}"
    )
    _row(table, f"chosen ({objective})", chosen)
    for device in devices:
        _row(table, f"{device} first", _plan(model, parse_shapes(shapes), target, objective, device, max_latency_ms))
    console.print(table)
    if "npu" not in devices:
        console.print("this chip has no NPU in its personality")
        return
    timing = XdnaTiming.from_params(chosen.personality.data.get("npu"))
    facts = npu_breakdown(chosen.loaded.graph, timing)
    array = timing.describe()
    peaks = ", ".join(f"{d} {v} TOPS" for d, v in array["peak_tops"].items())
    console.print(f"NPU model: {array['arch']}, {array['tiles']} tiles, peak {peaks}, DDR {array['ddr_gbps']} GB/s")
    used = _ops(chosen).get("npu", 0)
    total = sum(_ops(chosen).values())
    console.print(
        f"NPU: takes {total - sum(facts['refused'].values())} of {total} ops; on its own it would run "
        f"{facts['steps']} kernels ({facts['kernels_ms']:.3f} ms) from {facts['xclbins']} xclbins, paying "
        f"{facts['switches']} context switches ({facts['switches_ms']:.3f} ms) and {facts['commands_ms']:.3f} ms "
        "of commands, plus one host sync per launch"
    )
    for reason, count in facts["refused"].most_common(3):
        console.print(f"  not on the NPU ({count} ops): {reason}")
    if used:
        console.print(f"the NPU is in the plan: {used} ops, where its kernels plus launches beat the alternatives")
    else:
        reason = (
            "its context switches and launches outweigh its kernels"
            if facts["switches_ms"] > facts["kernels_ms"]
            else "the other processors finish its share sooner"
        )
        console.print(f"the NPU is not in the plan: {reason} (see the 'npu first' row)")


command = explain
