"""A compilation in progress and the stages after placement: partition, code generation, schedule, bundle. The
pipeline (ragc.pipeline) runs them after its own; the tuner and the profiler's glue plans run them on placements
of their own (placed_bundle)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import codegen
from codegen.artifact import Artifact, TensorStore
from ragc.bundle.schedule import build_schedule
from ragc.bundle.timeline import timeline_svg
from ragc.bundle.write import write_bundle
from ragc.costmodel import kernel_features, partition_op_stats
from ragc.costmodel.energy import add_partition_energy, energy_info, power_figures
from ragc.frontend import LoadedModel
from ragc.partition import Partition, partition
from ragc.placement import Placement, PlacementProblem
from ragc.placement.candidates import device_first
from runtime_min.format import TENSOR_STORE, dumps


@dataclass(frozen=True)
class CompileOptions:
    shapes: dict[str, tuple[int, ...]] | None = None
    devices: str | list[str] | tuple[str, ...] | None = None
    place: tuple[str, ...] = ()
    cut_before: tuple[str, ...] = ()
    solver: str = "auto"
    objective: str = "latency"
    max_latency_ms: float | None = None  # objective "energy": the latency cap
    target: str | Path | None = None
    time_limit_s: float = 5.0
    tune: bool = True  # time candidate plans on this chip (never for a --target, or when one processor is chosen)
    tune_budget_s: float = 20.0
    precision: str = "fp32"  # GPU partitions: fp32, fp16, bf16 or mixed, each checked (ragc.precision)
    gpu_scale: float = 1.0  # GPU op times multiplied by this (the gpu-busy variant: a contention factor)


@dataclass
class Compilation:
    """What the stages have made so far; each stage fills its own fields."""

    model: Path
    out_dir: Path
    options: CompileOptions
    loaded: LoadedModel | None = None
    personality: Any = None
    devices: list[str] = field(default_factory=list)
    problem: PlacementProblem | None = None
    placement: Placement | None = None
    cost: Any = None  # the cost model placement used: (graph, op, device) -> predicted ms
    forced: dict[str, str] = field(default_factory=dict)  # op -> the processor a --place rule put it on
    candidates: list[Any] = field(default_factory=list)  # placement.candidates.Candidate, the chosen one first
    timings: dict[str, dict[str, float]] = field(default_factory=dict)  # candidate -> measured {"ms", "se_ms"}
    partitions: list[Partition] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    fallbacks: dict[str, dict[str, Any]] = field(default_factory=dict)
    constants: dict[str, dict[str, Any]] = field(default_factory=dict)
    schedule: dict[str, Any] = field(default_factory=dict)
    bundle: Path | None = None
    store: TensorStore | None = None  # shared by the variants of one bundle (ragc.variants), else made by `code`
    info: dict[str, Any] = field(default_factory=dict)  # the manifest fields `bundle` writes
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> wall time


def placed_bundle(
    model: Path,
    loaded: LoadedModel,
    personality: Any,
    problem: PlacementProblem,
    placed: Placement,
    folder: Path,
    options: CompileOptions | None = None,
) -> Path:
    """The bundle of a placement already made (the tuner's candidates, the profiler's glue plans): the stages after
    placement, unchanged."""
    sub = Compilation(model, folder, options or CompileOptions(), loaded, personality, problem.devices, problem, placed)
    for stage in (partitions, code, schedule, bundle):
        stage(sub)
    return sub.bundle


def partitions(c: Compilation) -> None:
    if c.placement is None:
        return
    device_of = {op: c.placement.assignment[unit.name] for unit in c.problem.units for op in unit.ops}
    cuts = frozenset(c.options.cut_before) | _stage_cuts(c.problem, c.placement)
    c.partitions = partition(c.loaded.graph, device_of, cuts)


def code(c: Compilation) -> None:
    """Each partition's artifact; a non-CPU partition also gets a CPU fallback; every constant goes into one store."""
    from ragc.costmodel.npu import XdnaTiming
    from ragc.precision import gpu_emitter

    store = c.store = c.store or TensorStore()
    npu = XdnaTiming.from_params(c.personality.data.get("npu"))
    with gpu_emitter(c) as emit_gpu:
        for p in c.partitions:
            cpu = codegen.emit("cpu", p.graph, p.id, store, model=c.loaded.proto)
            c.files.update(cpu.files)
            if p.device == "cpu":
                c.artifacts[p.id] = _entry(cpu)
                continue
            native, info = (
                emit_gpu(p, store) if p.device == "gpu" else (codegen.emit(p.device, p.graph, p.id, store, npu=npu), {})
            )
            c.files.update(native.files)
            c.artifacts[p.id] = _entry(native) | info
            c.fallbacks[p.id] = _entry(cpu)
    graph = c.loaded.graph
    for name in graph.outputs:
        t = graph.tensors[name]
        if t.is_constant:
            c.constants[name] = {"offset": store.add(t.data), "dtype": t.dtype, "shape": list(t.shape)}
    c.files[TENSOR_STORE] = store.data()


def schedule(c: Compilation) -> None:
    graph = c.loaded.graph
    predicted = _partition_times(c.problem, c.partitions) if c.problem else {}
    s = build_schedule(graph, c.partitions, c.artifacts, c.fallbacks, predicted, c.options.objective, c.constants)
    s["stages"] = _stages(c.problem, c.placement, c.partitions)
    if c.placement is not None:
        _add_predicted_spans(s, c.problem, c.placement)
        add_partition_energy(s, c.problem, c.placement, _power(c))
        c.files["timeline.svg"] = timeline_svg(c.placement, c.problem).encode()
    kernels = {device: kernel_features(graph, device) for device in sorted({p.device for p in c.partitions})}
    c.files["opstats.json"] = dumps({p.id: partition_op_stats(graph, p.ops, kernels[p.device]) for p in c.partitions})
    c.schedule = s


def bundle(c: Compilation) -> None:
    bundle_info(c)
    c.bundle = write_bundle(c.out_dir, c.schedule, c.files, c.info, c.model)


def bundle_info(c: Compilation) -> None:
    """The manifest fields of the plan: predictions, solver, baselines, energy, candidates."""
    info: dict[str, Any] = {
        "model_sha256": c.loaded.source_sha256,
        "model_name": c.model.name,
        "chip_id": c.personality.chip_id,
        "predicted_ms": round(c.placement.predicted_ms + c.personality.fixed_ms, 6) if c.placement else 0.0,
        "solver": c.placement.solver if c.placement else "none",
        "gap": None if c.placement is None or c.placement.gap is None else round(c.placement.gap, 6),
        "unified_memory": c.personality.unified_memory,
        "baselines_ms": _baselines(c.problem) if c.problem else {},
        **(energy_info(c.problem, c.placement, _power(c), _baseline_plans(c.problem)) if c.placement else {}),
        "candidates": [
            {
                "name": cand.name,
                "predicted_ms": round(cand.placement.predicted_ms, 6),
                "measured_ms": c.timings.get(cand.name, {}).get("ms"),
            }
            for cand in c.candidates
        ],
    }
    chosen = next((cand.name for cand in c.candidates if cand.placement is c.placement), None)
    if chosen in c.timings:
        info["measured_ms"], info["chosen"] = c.timings[chosen]["ms"], chosen
    c.info = info


def _entry(artifact: Artifact) -> dict[str, Any]:
    return {"format": artifact.format, "files": sorted(artifact.files), **artifact.meta}


def _stage_cuts(problem: PlacementProblem, placement: Placement) -> frozenset[str]:
    """Throughput plans: every pipeline stage starts its own partition."""
    if not placement.stages:
        return frozenset()
    return frozenset(problem.unit(stage[0]).ops[0] for stage in placement.stages[1:] if stage)


def _partition_times(problem: PlacementProblem, parts: list[Partition]) -> dict[str, float]:
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
    return {device: round(plan.predicted_ms, 6) for device, plan in _baseline_plans(problem).items()}


def _baseline_plans(problem: PlacementProblem) -> dict[str, Placement]:
    plans = {device: device_first(problem, device) for device in problem.devices}
    return {device: plan for device, plan in plans.items() if plan is not None}


def _power(c: Compilation) -> dict[str, tuple[float, float]] | None:
    return power_figures(c.personality.data, c.problem.devices) if c.problem else None


def _stages(problem: PlacementProblem | None, placement: Placement | None, parts: list[Partition]):
    """Throughput plans: the partition ids of each pipeline stage, in order."""
    if placement is None or not placement.stages:
        return None
    unit_of_op = {op: unit.name for unit in problem.units for op in unit.ops}
    stage_of_unit = {u: i for i, stage in enumerate(placement.stages) for u in stage}
    stages: list[list[str]] = [[] for _ in placement.stages]
    for p in parts:
        stages[stage_of_unit[unit_of_op[p.ops[0]]]].append(p.id)
    return stages
