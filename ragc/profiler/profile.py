"""`ragc profile`: measure what each processor of this chip costs and return it as a Personality."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from ragc.costmodel.features import op_features
from ragc.ir import Graph
from ragc.personality.chip import chip_facts, chip_id
from ragc.personality.store import (
    SCHEMA,
    Personality,
    current_chip_id,
    load_personality,
    read_personality,
    save_personality,
    store_path,
)
from ragc.profiler import gpu_bench
from ragc.profiler.context import context_graphs, cpu_samples
from ragc.profiler.entries import device_entry
from ragc.profiler.glue import measure_glue
from ragc.profiler.oneop import attribute_nodes
from ragc.profiler.progress import bar_advance, progress_bar
from ragc.profiler.specs import chain, cpu_specs, projection_chains
from ragc.profiler.steady import BlockTimer, Gate, Steadiness, chunks, time_interleaved
from ragc.profiler.timers import GraphTimer

MIN_MS = 1e-4
VK_DEVICE_TYPE_CPU = 4  # VkPhysicalDeviceType of a Vulkan implementation on the CPU
GLUE_BUDGET_S = 6.0  # timing of the glue plans in a quick profile (a full one takes four times as long)


def cpu_overheads(budget_s: float, rounds: int, gate: Gate) -> tuple[float, float, float]:
    """(dispatch_ms per launch, op_overhead_ms per op inside a launch, profiler_bias_ms: what onnxruntime's profiler
    adds to each node it times), from one tiny op and a chain of 32, timed plain and profiled."""
    one, many = GraphTimer(chain(1), profiled=True), GraphTimer(chain(32), profiled=True)
    time_interleaved([one, many], budget_s, rounds, gate=gate)
    per_op = max(0.0, (many.wall_ms() - one.wall_ms()) / 31)
    traced_one, traced_many = (sum(t.node_ms()[0].values()) for t in (one, many))
    return max(MIN_MS, one.wall_ms() - per_op), per_op, max(0.0, (traced_many - traced_one) / 31)


def measure_samples(
    specs: list[tuple[str, Graph]],
    budget_s: float,
    rounds: int,
    bias_ms: float,
    advance: Callable[[BlockTimer, bool], None] | None = None,
    gate: Gate | None = None,
) -> tuple[list[dict[str, Any]], Steadiness]:
    """One sample per one-op graph: its features and its kernel time (onnxruntime's profiler, bias taken out),
    the graphs timed round robin in the gate's reference state (see steady.time_interleaved)."""
    samples, steadiness = [], None
    for chunk in chunks(specs):
        timers = [GraphTimer(graph, profiled=True, label=label) for label, graph in chunk]
        step = time_interleaved(timers, budget_s, rounds, advance, gate)
        steadiness = step if steadiness is None else steadiness + step
        for (label, graph), timer in zip(chunk, timers, strict=True):
            op = graph.ops[0]
            ms = attribute_nodes(graph, timer.node_ms(), bias_ms).get(op.name)
            if ms is not None:
                samples.append(
                    {
                        "op_type": op.op_type,
                        "label": label,
                        "features": op_features(graph, op),
                        "ms": max(MIN_MS, ms),
                        "source": "profile",
                    }
                )
    assert steadiness is not None, "no specs to measure"
    return samples, steadiness


def _host_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def gpu_specs(specs: list[tuple[str, Any]], quick: bool) -> list[tuple[str, Any]]:
    """The one-op graphs timed on the GPU: a quick profile keeps a third of them but every GEMM-shaped one, since
    transformers' time is nearly all GEMMs (a plain third left 2 MatMul samples on the H200 and predicted BERT-base
    at 6.4x its measured GPU time)."""
    if not quick:
        return specs
    is_gemm = [label.split()[0] in ("gemm", "matmul", "projection") for label, _ in specs]
    return [s for i, s in enumerate(specs) if is_gemm[i] or i % 3 == 0]


def gpu_context_graphs(facts: dict[str, Any], cpu_models: list[tuple[str, Any]], quick: bool) -> list[tuple[str, Any]]:
    """The whole random models timed on the GPU: a GPU runs each in a millisecond or two, so even a quick profile
    times all of them there (with only the first three CNNs and one transformer, `--no-tune` predicted six real
    exports' plans on the H200 31-166% long, 2026-12-03); a Vulkan device that is a CPU (lavapipe) keeps the quick
    set."""
    software = all(g.get("device_type") == VK_DEVICE_TYPE_CPU for g in facts["gpus"])
    return cpu_models if software or not quick else context_graphs(quick=False)


def profile_chip(quick: bool = True, console: Console | None = None) -> Personality:
    """Profile every processor found (CPU always; the Vulkan GPU when codegen and its backend can run it), every
    block timed in the state the machine was in when profiling started (see steady)."""
    facts = chip_facts()
    budget_s, rounds = (0.2, 2) if quick else (1.0, 4)
    with progress_bar(console) as bar:
        task = bar.add_task("preparing", total=None, label="")
        gate = Gate()
        specs = list(cpu_specs(quick))
        dispatch, per_op, bias = cpu_overheads(4 * budget_s, rounds, gate)
        bar.update(task, description="cpu", total=len(specs) * rounds, completed=0)
        samples, steadiness = measure_samples(specs, budget_s, rounds, bias, bar_advance(bar, task), gate)
        models = context_graphs(quick)
        bar.update(task, description="cpu models", total=len(models) * rounds, completed=0)
        timers = [GraphTimer(graph, profiled=True, label=name) for name, graph in models]
        time_interleaved(timers, 2 * budget_s, rounds, bar_advance(bar, task), gate)
        for (name, graph), timer in zip(models, timers, strict=True):
            samples += cpu_samples(name, graph, timer, bias, dispatch, per_op, "context")
        devices = {
            "cpu": device_entry(facts["cpu"]["model"], samples, dispatch, per_op, _host_memory(), profiler_bias_ms=bias)
        }
        gpu_models = gpu_context_graphs(facts, models, quick) + projection_chains(quick)
        gpu = gpu_bench.profile_gpu(facts, gpu_specs(specs, quick), gpu_models, budget_s, rounds, bar, task, gate)
        data: dict[str, Any] = {
            "schema": SCHEMA,
            "kind": "personality",
            "chip_id": chip_id(facts),
            "chip": facts,
            "devices": devices,
            "transfers": {},
            "unified_memory": True,  # the CPU alone has one memory; a GPU below says what it has
        }
        if gpu is not None:
            devices["gpu"] = gpu.device
            data["transfers"] = gpu.transfers
            data["unified_memory"] = gpu.unified
            data["glue"] = measure_glue(
                Personality(data), GLUE_BUDGET_S if quick else 4 * GLUE_BUDGET_S, gate, bar, task
            )
    data["profile"] = {
        "quick": quick,
        "budget_s": budget_s,
        "rounds": rounds,
        "steadiness": steadiness.to_dict() | {"probe_ms": gate.reference()},  # the GPU probe's included
    }
    return Personality(data)


def personality_or_profile(target: str | Path | None = None, quick: bool = True) -> Personality:
    """`target`'s personality, or this chip's stored one, profiled now (with a notice on stderr) if absent."""
    if target is not None:
        return load_personality(target)
    path = store_path(current_chip_id())
    if path.is_file():
        return read_personality(path)
    mode = "quick" if quick else "full"
    print(f"ragc: no personality for this chip yet; running a {mode} `ragc profile` (saved to {path})", file=sys.stderr)
    personality = profile_chip(quick=quick)
    save_personality(personality, path)
    return personality
