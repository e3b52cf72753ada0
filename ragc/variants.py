"""`ragc compile --variants`: several complete plans of one model in one bundle, every identical artifact stored once
(by content hash), and the compiled rule (ragc.rule) that picks one from live signals."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ragc.bundle.merge import merge_plans
from ragc.bundle.write import write_bundle
from ragc.compilation import Compilation, CompileOptions
from ragc.errors import UsageError
from ragc.pipeline import CompileResult, compile_options, compile_unwritten
from ragc.rule import compile_rule
from runtime_min.format import SCHEDULE

VARIANTS = ("latency", "throughput", "energy", "no-gpu", "no-npu", "gpu-busy")
DEFAULT_CONTENTION = 3.0  # a GPU kept ~70 % busy by another process leaves us about 1/(1 - 0.7) of the time
CONDITIONS = {
    "latency": "idle chip: least latency for one request",
    "throughput": "streams: the slowest pipeline stage least",
    "energy": "on battery or hot: least energy per request",
    "no-gpu": "the GPU is missing or saturated",
    "no-npu": "the NPU is missing",
    "gpu-busy": "another process shares the GPU: GPU op times x the contention factor",
}


def parse_variants(spec: str, devices: list[str]) -> list[str]:
    """The variant names of `--variants` ("default" or empty: latency plus one per processor that can go missing)."""
    if spec.strip() in ("", "default"):
        names = ["latency"] + [f"no-{d}" for d in ("gpu", "npu") if d in devices]
        return names + (["gpu-busy"] if "gpu" in devices else [])
    names = list(dict.fromkeys(n.strip() for n in spec.split(",") if n.strip()))
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise UsageError(f"bad --variants {spec!r}: use default or a comma list of {', '.join(VARIANTS)}")
    return names


def contention_factor(personality: Any) -> tuple[float, str]:
    """The GPU contention factor: `gpu_contention` of the personality (a profiled value) or the stated default."""
    value = personality.data.get("gpu_contention")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 1:
        return float(value), "profile"
    return DEFAULT_CONTENTION, "default"


def _variant_options(name: str, base: CompileOptions, devices: list[str], factor: float) -> CompileOptions:
    if name in ("throughput", "energy"):
        return replace(base, objective=name)
    if name.startswith("no-"):
        gone = name[3:]
        kept = [d for d in devices if d != gone] or ["cpu"]
        return replace(base, devices=kept, place=tuple(r for r in base.place if not r.endswith(f"={gone}")))
    if name == "gpu-busy":
        return replace(base, gpu_scale=factor)
    return base


def compile_variants(model: str | Path, out_dir: str | Path, spec: str, **options: Any) -> CompileResult:
    """Compile `model` once per variant of `spec` into one bundle at `out_dir`, sharing one tensor store."""
    model, out_dir = Path(model), Path(out_dir)
    base = compile_options(options)
    first = compile_unwritten(Compilation(model, out_dir, base))
    names = parse_variants(spec, first.devices)
    factor, source = contention_factor(first.personality)
    done: dict[str, Compilation] = {}
    for name in names:
        opts = _variant_options(name, base, first.devices, factor)
        reuse = opts == base and first not in done.values()
        done[name] = first if reuse else compile_unwritten(Compilation(model, out_dir, opts, store=first.store))
    files, table = _merge(done, factor, source)
    default = names[0]
    rule = compile_rule(names, done[default].devices, {n: t["predicted_ms"] for n, t in table.items()})
    chosen = done[default]
    info = chosen.info | {"variants": table, "default_variant": default, "rule": rule}
    files.pop(SCHEDULE)  # the writer adds it, from the default variant's schedule
    bundle = write_bundle(out_dir, chosen.schedule, files, info, model)
    return CompileResult(bundle, chosen.partitions, chosen.placement, chosen.problem, chosen.seconds)


def _merge(done: dict[str, Compilation], factor: float, source: str) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The variants' files (merge_plans) and the variants table of the manifest."""
    files, schedules = merge_plans(done)
    table: dict[str, Any] = {}
    for name, c in done.items():
        table[name] = {
            "schedule": schedules[name],
            "predicted_ms": c.info["predicted_ms"],
            "condition": CONDITIONS[name],
            "devices": c.schedule["processors"],
        }
        if name == "gpu-busy":
            table[name] |= {"contention_factor": factor, "contention_source": source}
    return files, table
