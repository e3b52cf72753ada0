"""The compile pipeline: front end -> personality -> placement -> partitions -> code generation -> schedule ->
bundle."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codegen import cpu as emit_cpu
from codegen.artifact import Artifact
from ragc import ir
from ragc.bundle.schedule import build_schedule
from ragc.bundle.timeline import timeline_svg
from ragc.bundle.write import dumps, write_bundle
from ragc.errors import UsageError
from ragc.frontend import LoadedModel, load_model
from ragc.partition import Partition, partition
from ragc.placement import Placement, PlacementProblem, build_problem, simulate, solve
from ragc.placement.rules import forced_devices, parse_rules
from ragc.placement.support import DEVICES, generator, unsupported_reason
from ragc.placement.units import build_units
from ragc.profiler.record import partition_op_stats


@dataclass
class CompileResult:
    bundle: Path
    partitions: list[Partition]
    placement: Placement
    problem: PlacementProblem
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> wall time

    @property
    def predicted_ms(self) -> float:
        return self.placement.predicted_ms

    @property
    def solver(self) -> str:
        return self.placement.solver

    @property
    def gap(self) -> float | None:
        return self.placement.gap


def parse_devices(spec: str | list[str] | tuple[str, ...]) -> list[str]:
    names = [d.strip() for d in spec.split(",")] if isinstance(spec, str) else list(spec)
    bad = [d for d in names if d not in DEVICES]
    if bad or not names:
        raise UsageError(f"bad --devices {spec!r}: use a comma list of {', '.join(DEVICES)}")
    return [d for d in DEVICES if d in names]


def compile_model(
    model: str | Path,
    out_dir: str | Path,
    *,
    shapes: dict[str, tuple[int, ...]] | None = None,
    devices: str | list[str] | None = None,
    place: list[str] | tuple[str, ...] = (),
    cut_before: list[str] | tuple[str, ...] = (),
    solver: str = "auto",
    objective: str = "latency",
    target: str | Path | None = None,
    time_limit_s: float = 5.0,
) -> CompileResult:
    """Compile `model` into a bundle at `out_dir`. `devices` defaults to every processor of the personality (this
    chip's, profiled on first use, or `target`'s); ops no listed processor runs go to the CPU."""
    from ragc.profiler.profile import personality_or_profile

    timer = _StageTimer()
    loaded = timer.run("frontend", load_model, model, shapes)
    personality = timer.run("personality", personality_or_profile, target)
    chosen = parse_devices(devices) if devices else personality.devices
    absent = [d for d in chosen if d not in personality.devices]
    if absent:
        raise UsageError(
            f"this chip's personality has no {', '.join(absent)}; compile for another chip with --target NAME "
            "(see `ragc profile --show` for what was found here)"
        )
    _check_cuts(loaded.graph, cut_before)
    problem, placement = timer.run(
        "placement", _place, loaded.graph, chosen, parse_rules(place), personality, solver, objective, time_limit_s
    )
    device_of = {op: placement.assignment[unit.name] for unit in problem.units for op in unit.ops}
    cuts = frozenset(cut_before) | _stage_cuts(problem, placement)
    parts = timer.run("partition", partition, loaded.graph, device_of, cuts)
    npu_timing = personality.data.get("npu")
    files, artifacts, fallbacks = timer.run("codegen", _emit_all, loaded, parts, npu_timing)
    predicted = _partition_times(problem, placement, parts)
    schedule = build_schedule(loaded.graph, parts, artifacts, fallbacks, predicted, objective)
    schedule["stages"] = _stages(problem, placement, parts)
    _add_predicted_spans(schedule, problem, placement)
    files["opstats.json"] = dumps({p.id: partition_op_stats(loaded.graph, p.ops) for p in parts})
    files["timeline.svg"] = timeline_svg(placement, problem).encode()
    info: dict[str, Any] = {
        "model_sha256": loaded.source_sha256,
        "model_name": Path(model).name,
        "chip_id": personality.chip_id,
        "predicted_ms": round(placement.predicted_ms, 6),
        "solver": placement.solver,
        "gap": None if placement.gap is None else round(placement.gap, 6),
        "unified_memory": personality.unified_memory,
        "baselines_ms": _baselines(problem),
    }
    bundle = timer.run("bundle", write_bundle, out_dir, schedule, files, info)
    return CompileResult(bundle, parts, placement, problem, timer.seconds)


def _check_cuts(graph: ir.Graph, cut_before: list[str] | tuple[str, ...]) -> None:
    unknown = sorted(set(cut_before) - {op.name for op in graph.ops})
    if unknown:
        raise UsageError(f"--cut names {', '.join(unknown)}, not nodes of the model; see `ragc inspect`")


def _place(graph: ir.Graph, chosen: list[str], rules, personality, solver: str, objective: str, time_limit_s: float):
    """Costs per op and processor (inf where unsupported, not chosen, or ruled out by --place), then solve.
    The CPU always takes part, for the ops no chosen processor can run."""
    from ragc.costmodel import cost_fn

    predict = cost_fn(personality)
    forced = forced_devices(graph, rules, lambda op, device: unsupported_reason(graph, op, device))
    devices = sorted(set(chosen) | {"cpu"} | set(forced.values()), key=DEVICES.index)
    runnable = {op.name: [d for d in chosen if unsupported_reason(graph, op, d) is None] for op in graph.ops}

    allowed = {op.name: [forced[op.name]] if op.name in forced else runnable[op.name] or ["cpu"] for op in graph.ops}
    units = build_units(graph)
    for _, ops in units:  # a fused unit runs whole on one processor: if its ops agree on none,
        if not set.intersection(*(set(allowed[name]) for name in ops)):  # the CPU takes the unit
            allowed.update({name: ["cpu"] for name in ops if name not in forced})

    def op_cost(g: ir.Graph, op: ir.Op, device: str) -> float:
        return predict(g, op, device) if device in allowed[op.name] else math.inf

    def transfer_ms(src: str, dst: str, nbytes: int) -> float:
        """A tensor crossing processors also means the consumer starts a new partition: its launch is paid too."""
        return personality.transfer_ms(src, dst, nbytes) + (personality.dispatch_ms(dst) if src != dst else 0.0)

    problem = build_problem(graph, devices, op_cost, transfer_ms, personality.capacity_bytes, units)
    return problem, solve(problem, solver, objective, time_limit_s)


def _stage_cuts(problem: PlacementProblem, placement: Placement) -> frozenset[str]:
    """Throughput plans: every pipeline stage starts its own partition."""
    if not placement.stages:
        return frozenset()
    return frozenset(problem.unit(stage[0]).ops[0] for stage in placement.stages[1:] if stage)


def _partition_times(problem: PlacementProblem, placement: Placement, parts: list[Partition]) -> dict[str, float]:
    unit_of = {op: unit for unit in problem.units for op in unit.ops}
    times = {}
    for p in parts:
        units = {unit_of[op].name: unit_of[op] for op in p.ops}.values()
        times[p.id] = round(sum(u.cost_ms[p.device] for u in units), 6)
    return times


def _add_predicted_spans(schedule: dict[str, Any], problem: PlacementProblem, placement: Placement) -> None:
    """Each partition's predicted start and finish (ms from the request's start), from its units' times."""
    unit_of = {op: unit.name for unit in problem.units for op in unit.ops}
    for entry in schedule["partitions"]:
        units = {unit_of[op] for op in entry["ops"]}
        entry["predicted_start_ms"] = round(min(placement.start_ms[u] for u in units), 6)
        entry["predicted_finish_ms"] = round(max(placement.finish_ms[u] for u in units), 6)


def _baselines(problem: PlacementProblem) -> dict[str, float]:
    """Predicted latency of each processor alone (the CPU taking what it cannot run), for comparison."""
    baselines = {}
    for device in problem.devices:
        assignment = {u.name: device if problem.supported(u, device) else "cpu" for u in problem.units}
        if any(not problem.supported(u, assignment[u.name]) for u in problem.units):
            continue  # a --place rule keeps some unit off the CPU
        order = {d: [u.name for u in problem.units if assignment[u.name] == d] for d in problem.devices}
        baselines[device] = round(simulate(problem, assignment, order).predicted_ms, 6)
    return baselines


def _stages(problem: PlacementProblem, placement: Placement, parts: list[Partition]) -> list[list[str]] | None:
    """Throughput plans: the partition ids of each pipeline stage, in order."""
    if not placement.stages:
        return None
    unit_of_op = {op: unit.name for unit in problem.units for op in unit.ops}
    stage_of_unit = {u: i for i, stage in enumerate(placement.stages) for u in stage}
    stages: list[list[str]] = [[] for _ in placement.stages]
    for p in parts:
        stages[stage_of_unit[unit_of_op[p.ops[0]]]].append(p.id)
    return stages


def _emit_all(
    loaded: LoadedModel, parts: list[Partition], npu_timing: dict[str, Any] | None
) -> tuple[dict[str, bytes], dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Run each partition's emitter; non-CPU partitions also get a CPU fallback."""
    files: dict[str, bytes] = {}
    artifacts: dict[str, dict[str, Any]] = {}
    fallbacks: dict[str, dict[str, Any]] = {}
    for p in parts:
        cpu = emit_cpu.emit(loaded.proto, p.graph, p.id)
        files.update(cpu.files)
        if p.device == "cpu":
            artifacts[p.id] = _entry(cpu)
            continue
        emitter = generator(p.device)
        native = emitter.emit(p.graph, p.id, npu_timing) if p.device == "npu" else emitter.emit(p.graph, p.id)
        files.update(native.files)
        artifacts[p.id] = _entry(native)
        fallbacks[p.id] = _entry(cpu)
    return files, artifacts, fallbacks


def _entry(artifact: Artifact) -> dict[str, Any]:
    return {"format": artifact.format, "files": sorted(artifact.files), **artifact.meta}


class _StageTimer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def run(self, stage: str, fn, *args):
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds[stage] = time.perf_counter() - start
