"""The compile pipeline: front end -> placement -> partitions -> code generation -> schedule -> bundle."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codegen.artifact import Artifact
from ragc import emit_cpu, ir
from ragc.bundle import write_bundle
from ragc.errors import PlacementError, UsageError
from ragc.forced import forced_devices, parse_rules
from ragc.frontend import LoadedModel, load_model
from ragc.partition import Partition, partition
from ragc.schedule import build_schedule
from ragc.support import DEVICES, generator, unsupported_reason


@dataclass
class CompileResult:
    bundle: Path
    partitions: list[Partition]
    predicted_ms: float | None
    solver: str
    gap: float | None
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> wall time


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
    devices: str | list[str] = "cpu",
    place: list[str] | tuple[str, ...] = (),
    cut_before: list[str] | tuple[str, ...] = (),
) -> CompileResult:
    timer = _StageTimer()
    loaded = timer.run("frontend", load_model, model, shapes)
    chosen = parse_devices(devices)
    device_of, solver = timer.run("placement", _place, loaded.graph, chosen, parse_rules(place))
    unknown_cuts = sorted(set(cut_before) - {op.name for op in loaded.graph.ops})
    if unknown_cuts:
        raise UsageError(f"--cut names {', '.join(unknown_cuts)}, not nodes of the model; see `ragc inspect`")
    parts = timer.run("partition", partition, loaded.graph, device_of, frozenset(cut_before))
    files, artifacts, fallbacks = timer.run("codegen", _emit_all, loaded, parts)
    schedule = build_schedule(loaded.graph, parts, artifacts, fallbacks, predicted_ms={})
    info: dict[str, Any] = {
        "model_sha256": loaded.source_sha256,
        "model_name": Path(model).name,
        "predicted_ms": None,
        "solver": solver,
        "gap": None,
    }
    bundle = timer.run("bundle", write_bundle, out_dir, schedule, files, info)
    return CompileResult(bundle, parts, None, solver, None, timer.seconds)


def _place(graph: ir.Graph, devices: list[str], rules: list[tuple[str, str]]) -> tuple[dict[str, str], str]:
    """Forced rules first; every other op goes to the first listed processor that can run it, else the CPU."""
    forced = forced_devices(graph, rules)
    device_of = {}
    for op in graph.ops:
        if op.name in forced:
            device = forced[op.name]
            reason = unsupported_reason(graph, op, device)
            if reason:
                raise PlacementError(
                    f"--place puts {op.name} ({op.op_type}) on {device}, which cannot run it: {reason}"
                )
        else:
            device = next((d for d in devices if unsupported_reason(graph, op, d) is None), "cpu")
        device_of[op.name] = device
    return device_of, "forced" if rules else "first-fit"


def _emit_all(
    loaded: LoadedModel, parts: list[Partition]
) -> tuple[dict[str, bytes], dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Run each partition's emitter; non-CPU partitions also get a CPU fallback."""
    files: dict[str, bytes] = {}
    artifacts: dict[str, dict[str, Any]] = {}
    fallbacks: dict[str, dict[str, Any]] = {}
    for p in parts:
        cpu = emit_cpu.emit(loaded.proto, p.graph, p.id)
        native = cpu if p.device == "cpu" else generator(p.device).emit(p.graph, p.id)
        for artifact in {id(a): a for a in (native, cpu)}.values():
            files.update(artifact.files)
        artifacts[p.id] = _entry(native)
        if p.device != "cpu":
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
