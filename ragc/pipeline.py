"""The compile pipeline: one named, linear list of stages (STAGES), each a function of the compilation so far, each
timed, a failure naming its stage. `compile_model` runs them in order."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import codegen
from codegen.artifact import Artifact, TensorStore
from ragc import ir
from ragc.bundle.schedule import build_schedule
from ragc.bundle.timeline import timeline_svg
from ragc.bundle.write import check_target, write_bundle
from ragc.costmodel.energy import add_partition_energy, energy_info, power_figures
from ragc.errors import RagcError, UsageError
from ragc.frontend import LoadedModel, load_model
from ragc.partition import Partition, partition
from ragc.placement import Placement, PlacementProblem, build_problem, simulate, solve
from ragc.placement.rules import forced_devices, parse_rules
from ragc.placement.units import build_units
from ragc.profiler.record import partition_op_stats
from runtime_min.format import PROCESSORS, TENSOR_STORE, dumps


class InternalError(Exception):
    """A bug of ragc's inside one stage (never a RagcError: the CLI reports it as an internal error)."""


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
    partitions: list[Partition] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    fallbacks: dict[str, dict[str, Any]] = field(default_factory=dict)
    constants: dict[str, dict[str, Any]] = field(default_factory=dict)
    schedule: dict[str, Any] = field(default_factory=dict)
    bundle: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> wall time


@dataclass
class CompileResult:
    bundle: Path
    partitions: list[Partition]
    placement: Placement | None
    problem: PlacementProblem | None
    seconds: dict[str, float]

    @property
    def predicted_ms(self) -> float:
        return self.placement.predicted_ms if self.placement else 0.0

    @property
    def solver(self) -> str:
        return self.placement.solver if self.placement else "none"

    @property
    def gap(self) -> float | None:
        return self.placement.gap if self.placement else None


def parse_devices(spec: str | list[str] | tuple[str, ...]) -> list[str]:
    names = [d.strip() for d in spec.split(",")] if isinstance(spec, str) else list(spec)
    bad = [d for d in names if d not in PROCESSORS]
    if bad or not names:
        raise UsageError(f"bad --devices {spec!r}: use a comma list of {', '.join(PROCESSORS)}")
    return [d for d in PROCESSORS if d in names]


# --- the stages ----------------------------------------------------------------------------------------------------


def frontend(c: Compilation) -> None:
    check_target(c.out_dir, c.model)  # before any work: never compile for minutes into a target that is refused
    c.loaded = load_model(c.model, c.options.shapes)
    unknown = sorted(set(c.options.cut_before) - {op.name for op in c.loaded.graph.ops})
    if unknown:
        raise UsageError(f"--cut names {', '.join(unknown)}, not nodes of the model; see `ragc inspect`")


def personality(c: Compilation) -> None:
    from ragc.profiler.profile import personality_or_profile

    c.personality = personality_or_profile(c.options.target)
    c.devices = parse_devices(c.options.devices) if c.options.devices else c.personality.devices
    absent = [d for d in c.devices if d not in c.personality.devices]
    if absent:
        raise UsageError(
            f"this chip's personality has no {', '.join(absent)}; compile for another chip with --target NAME "
            "(see `ragc profile --show` for what was found here)"
        )


def placement(c: Compilation) -> None:
    """Costs per op and processor (inf where unsupported, not chosen, or ruled out by --place), then solve.
    The CPU always takes part, for the ops no chosen processor can run."""
    from ragc.costmodel import cost_fn

    graph = c.loaded.graph
    if not graph.ops:
        return  # nothing to place: the plan's outputs are its inputs or constants
    predict = cost_fn(c.personality)
    rules = parse_rules(c.options.place)
    forced = forced_devices(graph, rules, lambda op, device: codegen.unsupported_reason(graph, op, device))
    devices = sorted(set(c.devices) | {"cpu"} | set(forced.values()), key=PROCESSORS.index)
    runnable = {op.name: [d for d in c.devices if codegen.unsupported_reason(graph, op, d) is None] for op in graph.ops}
    allowed = {op.name: [forced[op.name]] if op.name in forced else runnable[op.name] or ["cpu"] for op in graph.ops}
    units = build_units(graph)
    for _, ops in units:  # a fused unit runs whole on one processor: if its ops agree on none, the CPU takes it
        if not set.intersection(*(set(allowed[name]) for name in ops)):
            allowed.update({name: ["cpu"] for name in ops if name not in forced})

    def op_cost(g: ir.Graph, op: ir.Op, device: str) -> float:
        return predict(g, op, device) if device in allowed[op.name] else math.inf

    def transfer_ms(src: str, dst: str, nbytes: int) -> float:
        """A tensor crossing processors also means the consumer starts a new partition: its launch is paid too."""
        return c.personality.transfer_ms(src, dst, nbytes) + (c.personality.dispatch_ms(dst) if src != dst else 0.0)

    c.problem = build_problem(graph, devices, op_cost, transfer_ms, c.personality.capacity_bytes, units)
    power = power_figures(c.personality.data, devices) if c.options.objective == "energy" else None
    c.placement = solve(
        c.problem, c.options.solver, c.options.objective, c.options.time_limit_s, power, c.options.max_latency_ms
    )


def partitions(c: Compilation) -> None:
    if c.placement is None:
        return
    device_of = {op: c.placement.assignment[unit.name] for unit in c.problem.units for op in unit.ops}
    cuts = frozenset(c.options.cut_before) | _stage_cuts(c.problem, c.placement)
    c.partitions = partition(c.loaded.graph, device_of, cuts)


def code(c: Compilation) -> None:
    """Each partition's artifact; a non-CPU partition also gets a CPU fallback; every constant goes into one store."""
    from ragc.costmodel.npu import XdnaTiming

    store = TensorStore()
    npu = XdnaTiming.from_params(c.personality.data.get("npu"))
    for p in c.partitions:
        cpu = codegen.emit("cpu", p.graph, p.id, store, model=c.loaded.proto)
        c.files.update(cpu.files)
        if p.device == "cpu":
            c.artifacts[p.id] = _entry(cpu)
            continue
        native = codegen.emit(p.device, p.graph, p.id, store, npu=npu)
        c.files.update(native.files)
        c.artifacts[p.id] = _entry(native)
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
    c.files["opstats.json"] = dumps({p.id: partition_op_stats(graph, p.ops) for p in c.partitions})
    c.schedule = s


def bundle(c: Compilation) -> None:
    info: dict[str, Any] = {
        "model_sha256": c.loaded.source_sha256,
        "model_name": c.model.name,
        "chip_id": c.personality.chip_id,
        "predicted_ms": round(c.placement.predicted_ms, 6) if c.placement else 0.0,
        "solver": c.placement.solver if c.placement else "none",
        "gap": None if c.placement is None or c.placement.gap is None else round(c.placement.gap, 6),
        "unified_memory": c.personality.unified_memory,
        "baselines_ms": _baselines(c.problem) if c.problem else {},
        **(energy_info(c.problem, c.placement, _power(c), _baseline_plans(c.problem)) if c.placement else {}),
    }
    c.bundle = write_bundle(c.out_dir, c.schedule, c.files, info, c.model)


STAGES: list[tuple[str, Callable[[Compilation], None]]] = [
    ("frontend", frontend),
    ("personality", personality),
    ("placement", placement),
    ("partition", partitions),
    ("codegen", code),
    ("schedule", schedule),
    ("bundle", bundle),
]


def compile_model(model: str | Path, out_dir: str | Path, **options: Any) -> CompileResult:
    """Compile `model` into a bundle at `out_dir`; `options` as CompileOptions (shapes, devices, place, cut_before,
    solver, objective, target, time_limit_s). `devices` defaults to every processor of the personality (this
    chip's, profiled on first use, or `target`'s); ops no listed processor runs go to the CPU."""
    c = Compilation(Path(model), Path(out_dir), CompileOptions(**_tuples(options)))
    for name, stage in STAGES:
        start = time.perf_counter()
        try:
            stage(c)
        except (RagcError, KeyboardInterrupt):
            raise
        except Exception as exc:  # a bug of ours: say in which stage
            raise InternalError(f"stage {name}: {type(exc).__name__}: {exc}") from exc
        finally:
            c.seconds[name] = time.perf_counter() - start
    return CompileResult(c.bundle, c.partitions, c.placement, c.problem, c.seconds)


def _tuples(options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(CompileOptions.__dataclass_fields__))
    if unknown:
        raise TypeError(
            f"unknown compile option {unknown[0]!r}; the options are {', '.join(CompileOptions.__dataclass_fields__)}"
        )
    return {k: tuple(v) if k in ("place", "cut_before") else v for k, v in options.items()}


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
    plans = {}
    for device in problem.devices:
        assignment = {u.name: device if problem.supported(u, device) else "cpu" for u in problem.units}
        if any(not problem.supported(u, assignment[u.name]) for u in problem.units):
            continue  # a --place rule keeps some unit off the CPU
        order = {d: [u.name for u in problem.units if assignment[u.name] == d] for d in problem.devices}
        plans[device] = simulate(problem, assignment, order)
    return plans


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
