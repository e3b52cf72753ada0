"""The compile pipeline: one named, linear list of stages (STAGES), each a function of the compilation so far, each
timed, a failure naming its stage. `compile_model` runs them in order."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import codegen
from ragc import ir
from ragc.bundle.costs import costs
from ragc.bundle.write import check_target
from ragc.compilation import (
    Compilation,
    CompileOptions,
    bundle,
    bundle_info,
    code,
    partitions,
    placed_bundle,
    schedule,
)
from ragc.costmodel.energy import power_figures
from ragc.errors import RagcError, UsageError
from ragc.frontend import load_model
from ragc.partition import Partition
from ragc.placement import Placement, PlacementProblem, build_problem, solve
from ragc.placement.rules import forced_devices, parse_rules
from ragc.placement.units import build_units
from runtime_min.format import PROCESSORS


class InternalError(Exception):
    """A bug of ragc's inside one stage (never a RagcError: the CLI reports it as an internal error)."""


@dataclass
class CompileResult:
    """What `ragc.compile` made: the bundle folder, its partitions, the placement and its problem, stage times."""

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
    The CPU always takes part, for the ops no chosen processor can run; GPU kernels are priced in --precision."""
    from codegen.gpu.precision import choose
    from ragc.costmodel import cost_fn
    from ragc.precision import gpu_features

    graph = c.loaded.graph
    if not graph.ops:
        return  # nothing to place: the plan's outputs are its inputs or constants
    predict = cost_fn(c.personality, choose(c.options.precision, gpu_features(c.personality)))
    rules = parse_rules(c.options.place)
    forced = forced_devices(graph, rules, lambda op, device: codegen.unsupported_reason(graph, op, device))
    c.cost, c.forced = predict, forced  # kept for the bundle's costs.json (ragc explain)
    devices = sorted(set(c.devices) | {"cpu"} | set(forced.values()), key=PROCESSORS.index)
    runnable = {op.name: [d for d in c.devices if codegen.unsupported_reason(graph, op, d) is None] for op in graph.ops}
    allowed = {op.name: [forced[op.name]] if op.name in forced else runnable[op.name] or ["cpu"] for op in graph.ops}
    units = build_units(graph)
    for _, ops in units:  # a fused unit runs whole on one processor: if its ops agree on none, the CPU takes it
        if not set.intersection(*(set(allowed[name]) for name in ops)):
            allowed.update({name: ["cpu"] for name in ops if name not in forced})

    def op_cost(g: ir.Graph, op: ir.Op, device: str) -> float:
        scale = c.options.gpu_scale if device == "gpu" else 1.0
        return predict(g, op, device) * scale if device in allowed[op.name] else math.inf

    def transfer_ms(src: str, dst: str, nbytes: int) -> float:
        """A tensor crossing processors also means the consumer starts a new partition: its launch is paid too."""
        return c.personality.transfer_ms(src, dst, nbytes) + (c.personality.dispatch_ms(dst) if src != dst else 0.0)

    c.problem = build_problem(
        graph, devices, op_cost, transfer_ms, c.personality.capacity_bytes, units, c.personality.transfer_ms
    )
    power = power_figures(c.personality.data, devices) if c.options.objective == "energy" else None
    c.placement = solve(
        c.problem, c.options.solver, c.options.objective, c.options.time_limit_s, power, c.options.max_latency_ms
    )


def tune(c: Compilation) -> None:
    """On the chip that is present, with several processors to choose from: time the candidate plans and keep the
    measured best (timings reused from the personality when it has them). A cross-compile relies on the model."""
    from ragc.personality.store import current_chip_id
    from ragc.placement.candidates import candidates
    from ragc.profiler.tune import kept_plan
    from ragc.profiler.tune import tune as time_candidates

    if c.placement is None:
        return
    kept = kept_plan(c.personality, c.loaded.source_sha256, c.options.objective)
    c.candidates = candidates(c.problem, c.placement, c.options.objective, c.options.time_limit_s, kept)
    here = not c.personality.is_target and c.personality.chip_id == current_chip_id()
    if not (c.options.tune and here and len(c.devices) > 1 and len(c.candidates) > 1):
        return
    chosen, c.timings = time_candidates(
        c.candidates, lambda cand, folder: _candidate_bundle(c, cand, folder), c.personality,
        c.loaded.source_sha256, c.options.objective, c.options.tune_budget_s,
    )  # fmt: skip
    c.placement = chosen.placement


def _candidate_bundle(c: Compilation, candidate: Any, folder: Path) -> Path:
    """A candidate plan written as a bundle of its own (for timing), by the same stages as the real one."""
    return placed_bundle(c.model, c.loaded, c.personality, c.problem, candidate.placement, folder, c.options)


STAGES: list[tuple[str, Callable[[Compilation], None]]] = [
    ("frontend", frontend),
    ("personality", personality),
    ("placement", placement),
    ("tune", tune),
    ("partition", partitions),
    ("codegen", code),
    ("schedule", schedule),
    ("costs", costs),
    ("bundle", bundle),
]


def compile_model(model: str | Path, out_dir: str | Path, **options: Any) -> CompileResult:
    """Compile `model` into a bundle at `out_dir`; `options` as CompileOptions (shapes, devices, place, cut_before,
    solver, objective, target, time_limit_s). `devices` defaults to every processor of the personality (this
    chip's, profiled on first use, or `target`'s); ops no listed processor runs go to the CPU."""
    c = Compilation(Path(model), Path(out_dir), compile_options(options))
    run_stages(c)
    return CompileResult(c.bundle, c.partitions, c.placement, c.problem, c.seconds)


def run_stages(c: Compilation, stages: list[tuple[str, Callable[[Compilation], None]]] = STAGES) -> None:
    """Run `stages` on `c` in order, timing each; an error that is not a RagcError is ours: say in which stage."""
    for name, stage in stages:
        start = time.perf_counter()
        try:
            stage(c)
        except (RagcError, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise InternalError(f"stage {name}: {type(exc).__name__}: {exc}") from exc
        finally:
            c.seconds[name] = time.perf_counter() - start


def compile_unwritten(c: Compilation) -> Compilation:
    """Every stage but writing the bundle, then the manifest fields: for plans written together as one bundle
    (ragc.variants, ragc.llm)."""
    run_stages(c, [(name, stage) for name, stage in STAGES if name != "bundle"])
    bundle_info(c)
    return c


def compile_options(options: dict[str, Any]) -> CompileOptions:
    """`ragc.compile`'s keyword options as CompileOptions; an unknown one is a TypeError naming the valid ones."""
    unknown = sorted(set(options) - set(CompileOptions.__dataclass_fields__))
    if unknown:
        raise TypeError(
            f"unknown compile option {unknown[0]!r}; the options are {', '.join(CompileOptions.__dataclass_fields__)}"
        )
    return CompileOptions(**{k: tuple(v) if k in ("place", "cut_before") else v for k, v in options.items()})
