"""`ragc costmodel eval`: leave-one-model-out accuracy of the cost model on this chip's processors.

CPU: every model of the set is run whole in one onnxruntime session with the runtime's session options, timed
plain (the measured end-to-end latency) and through onnxruntime's per-node profiler, which gives each op its share
of that time in context (fused epilogues and layouts included; see to_wall). GPU: every model runs as one ragc GPU
partition (measure_gpu), its dispatches' timestamps giving the ops' times. Both are timed round robin in the
personality's machine state (personality.steady). Then, per held-out model, a cost model is trained on the
personality's profile samples plus the op samples of every *other* model, and asked for the held-out model's ops
(op-level error, over ops timed at 5 us or more) and its end-to-end latency: one launch plus the predicted ops
(kernel + per-op overhead; epilogues and fused elementwise ops folded, metadata free), plus, off the CPU, the
copies of its inputs and outputs. On the GPU the fold also refits the launch terms with the other models' whole
runs (fold_personality).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console

from ragc.costmodel import CostModel
from ragc.errors import PersonalityError
from ragc.ir import Graph
from ragc.personality.store import Personality
from ragc.profiler.context import cpu_samples
from ragc.profiler.gpu_bench import fit_launch, launch_run
from ragc.profiler.model_timing import ModelTiming
from ragc.profiler.progress import bar_advance, progress_bar
from ragc.profiler.steady import Gate, Steadiness, time_interleaved
from ragc.profiler.timers import GraphTimer
from ragc.profiler.zoo import model_label, model_set

ROUNDS = 5  # blocks per model, round robin (see steady)
MIN_SCORED_MS = 0.005  # op-level errors leave out ops timed under 5 us: the profiler's resolution is 1 us, its bias ~6


def timings_from_dicts(rows: list[dict[str, Any]]) -> list[ModelTiming]:
    """ModelTimings saved with to_dict, their graphs rebuilt from the evaluation set."""
    graphs = model_set([r["name"] for r in rows])
    return [
        ModelTiming(r["name"], graphs[r["name"]], r["samples"], float(r["measured_ms"]), float(r.get("noise_pct", 0)))
        for r in rows
    ]


def measure_models(
    graphs: dict[str, Graph],
    personality: Personality,
    budget_s: float,
    rounds: int = ROUNDS,
    gate: Gate | None = None,
    console: Console | None = None,
) -> tuple[list[ModelTiming], Steadiness]:
    """Time every model of the set whole and each of its (non-metadata) ops in context, `budget_s` seconds per
    model, round robin over the models in the gate's reference state (see steady), with a progress bar."""
    bias = float(personality.device("cpu").get("profiler_bias_ms", 0.0))
    with progress_bar(console) as bar:
        task = bar.add_task("preparing", total=len(graphs), label="")
        timers = []
        for name, graph in graphs.items():
            bar.update(task, advance=1, label=name)
            timers.append(GraphTimer(graph, profiled=True, label=name))
        bar.update(task, description="measuring", total=len(graphs) * rounds, completed=0)
        steadiness = time_interleaved(timers, budget_s, rounds, bar_advance(bar, task), gate)
    dispatch, overhead = personality.dispatch_ms("cpu"), personality.op_ms("cpu", 0.0)
    timings = [
        ModelTiming(
            name,
            graph,
            cpu_samples(name, graph, timer, bias, dispatch, overhead, "eval"),
            timer.wall_ms(),
            timer.spread_pct(),
        )
        for (name, graph), timer in zip(graphs.items(), timers, strict=True)
    ]
    return timings, steadiness


def reference_gate(personality: Personality) -> Gate:
    """A gate for the state the personality was profiled in (the state now, for personalities that do not say)."""
    return Gate(personality.data.get("profile", {}).get("steadiness", {}).get("probe_ms"))


def _within(pred: float, true: float, tol: float = 0.10) -> bool:
    return abs(pred - true) <= tol * true


def _op_errors(model: CostModel, timing: ModelTiming, device: str) -> list[tuple[float, float]]:
    """(predicted, measured) kernel ms of the ops timed at MIN_SCORED_MS or more."""
    scored = [s for s in timing.samples if s["ms"] >= MIN_SCORED_MS]
    preds = model.predict(device, [s["features"] for s in scored])
    return [(p, s["ms"]) for p, s in zip(preds, scored, strict=True)]


def end_to_end_ms(personality: Personality, graph: Graph, device: str, op_ms: dict[str, float]) -> float:
    """Wall ms of a run of the whole graph on `device` from its ops' ms (kernel plus per-op overhead), as a compile
    prices a one-partition plan: one launch plus, off the CPU, the inputs' and outputs' hand-offs (latency and
    bytes: with measured glue the GPU's launch is in them, Personality.transfer_ms)."""
    total = personality.dispatch_ms(device) + sum(op_ms.values())
    if device == "cpu":
        return total
    for src, dst, names in (("cpu", device, graph.inputs), (device, "cpu", graph.outputs)):
        total += personality.transfer_ms(src, dst, sum(graph.tensors[n].nbytes for n in names))
    return total


def fold_personality(personality: Personality, device: str, others: list[ModelTiming]) -> Personality:
    """What a fold predicts with: for a device with timestamped kernels (the GPU), the launch fit redone over the
    profile's multi-op runs plus the other models' whole runs, whose walls are training data like their ops."""
    entry = personality.device(device)
    if "kernel_scale" not in entry or not others:
        return personality
    gbps = personality.data.get("transfers", {}).get(f"cpu->{device}", {}).get("gbps", 1.0)
    runs = [*entry.get("launch_runs", [])]
    runs += [launch_run(t.graph, len(t.samples), sum(s["ms"] for s in t.samples), t.measured_ms, gbps) for t in others]
    dispatch, overhead, scale = fit_launch(runs)
    refit = entry | {"dispatch_ms": dispatch, "op_overhead_ms": overhead, "kernel_scale": scale}
    return Personality(personality.data | {"devices": personality.data["devices"] | {device: refit}}, personality.path)


def leave_one_model_out(personality: Personality, timings: list[ModelTiming], device: str = "cpu") -> dict[str, Any]:
    """The evaluation report of one device (JSON-ready): per model and over all its ops. Each model also gets the
    error of the same end-to-end sum made of its *measured* op times: the floor set by composition and by the
    machine's noise, which no cost model can beat; and the error of the personality alone (no model's samples:
    what a `--no-tune` compile or a cross-compile predicts)."""
    rows, all_pairs = [], []
    alone = CostModel(personality)  # what a --no-tune compile predicts with: the profile, no model's own runs
    for held in timings:
        rest = [t for t in timings if t is not held]
        fold = fold_personality(personality, device, rest)
        model = CostModel(fold, extra_samples={device: [s for t in rest for s in t.samples]})
        pairs = _op_errors(model, held, device)
        all_pairs += pairs
        predicted = end_to_end_ms(fold, held.graph, device, model.graph_ms(held.graph, device))
        measured_ops = {s["op"]: fold.op_ms(device, s["ms"]) for s in held.samples}
        composed = end_to_end_ms(fold, held.graph, device, measured_ops)
        alone_ms = end_to_end_ms(personality, held.graph, device, alone.graph_ms(held.graph, device))
        rows.append(
            {
                "model": model_label(held.name),
                "ops": len(held.graph.ops),
                "measured_ms": round(held.measured_ms, 4),
                "predicted_ms": round(predicted, 4),
                "error_pct": round(100 * (predicted - held.measured_ms) / held.measured_ms, 2),
                "measured_ops_error_pct": round(100 * (composed - held.measured_ms) / held.measured_ms, 2),
                "alone_error_pct": round(100 * (alone_ms / held.measured_ms - 1), 2),
                "noise_pct": round(held.noise_pct, 2),
                "op_mape_pct": round(_mape(pairs), 2),
                "op_within_10_pct": round(_share_within(pairs), 2),
            }
        )
    return {
        "device": device,
        "device_name": personality.device(device).get("name", ""),
        "chip_id": personality.chip_id,
        "profile_samples": len(personality.samples(device)),
        "models": rows,
        "ops": {
            "count": len(all_pairs),
            "mape_pct": round(_mape(all_pairs), 2),
            "within_10_pct": round(_share_within(all_pairs), 2),
        },
        "models_within_10": sum(abs(r["error_pct"]) <= 10 for r in rows),
        "alone_within_15": sum(abs(r["alone_error_pct"]) <= 15 for r in rows),
    }


def _mape(pairs: list[tuple[float, float]]) -> float:
    return 100 * sum(abs(p - t) / t for p, t in pairs) / max(1, len(pairs))


def _share_within(pairs: list[tuple[float, float]]) -> float:
    return 100 * sum(_within(p, t) for p, t in pairs) / max(1, len(pairs))


def measure_devices(
    personality: Personality, graphs: dict[str, Graph], devices: list[str], budget: float, console: Console
) -> dict[str, dict[str, Any]]:
    """Device -> {"timings": [ModelTiming.to_dict()], "skipped", "steadiness"}: the models measured on each device
    (JSON-ready, for --save-timings)."""
    from ragc.profiler.measure_gpu import measure_gpu_models

    gate = reference_gate(personality)
    measured: dict[str, dict[str, Any]] = {}
    if "cpu" in devices:
        timings, steadiness = measure_models(graphs, personality, budget, gate=gate, console=console)
        measured["cpu"] = {"timings": [t.to_dict() for t in timings], "skipped": [], "steadiness": steadiness.to_dict()}
    if "gpu" in devices:
        if "gpu" not in personality.devices:
            console.print("ragc: this chip's personality has no GPU (none found when profiling); skipping the GPU")
        else:
            timings, skipped, steadiness = measure_gpu_models(graphs, budget, ROUNDS, gate, console)
            measured["gpu"] = {
                "timings": [t.to_dict() for t in timings],
                "skipped": skipped,
                "steadiness": steadiness.to_dict() if steadiness else None,
            }
    return measured


def load_measurements(path: Path, chip: str) -> dict[str, dict[str, Any]]:
    """What measure_devices returned, from a file --save-timings wrote on this chip."""
    try:
        data = json.loads(path.read_text())
        devices = data["devices"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PersonalityError(f"{path} is not a file of `ragc costmodel eval --save-timings` ({exc})") from None
    if data.get("chip_id") != chip:
        raise PersonalityError(
            f"{path} was measured on chip {data.get('chip_id')}, this chip is {chip}; evaluate it on that chip"
        )
    return devices


def device_report(personality: Personality, device: str, measured: dict[str, Any]) -> dict[str, Any]:
    """The leave-one-model-out report of one device's measurements, with what the measurement saw."""
    report = leave_one_model_out(personality, timings_from_dicts(measured["timings"]), device)
    return report | {"skipped": measured["skipped"], "steadiness": measured["steadiness"]}
