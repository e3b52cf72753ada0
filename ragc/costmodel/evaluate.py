"""`ragc costmodel eval`: leave-one-model-out accuracy of the cost model on this chip's CPU.

Every model of the set is run whole in one onnxruntime session with the runtime's session options: timed plain
(the measured end-to-end latency) and through onnxruntime's per-node profiler, which gives each op its time in
context (what it costs inside a real model, fused epilogues and layouts included; profiler bias taken out). Then,
per held-out model, a cost model is trained on the personality's profile samples plus the op samples of every
*other* model, and asked for the held-out model's ops (op-level error, over ops timed at 5 us or more) and its
end-to-end latency: one launch overhead plus the predicted ops (kernel + per-op overhead; epilogues folded,
metadata free), every op counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Console

from ragc.costmodel import CostModel
from ragc.ir import Graph
from ragc.opstats import family_of_features, op_features
from ragc.personality.oneop import op_ms, time_graph
from ragc.personality.profile import MIN_MS, progress_bar
from ragc.personality.store import Personality

DEVICE = "cpu"  # the only processor whose whole-model time this machine can measure without ragc's runtime
MIN_SCORED_MS = 0.005  # op-level errors leave out ops timed under 5 us: the profiler's resolution is 1 us, its bias ~6


@dataclass
class ModelTiming:
    name: str
    graph: Graph
    samples: list[dict[str, Any]]  # one per timed non-metadata op: {"op", "op_type", "features", "ms", "source"}
    measured_ms: float  # whole model, one session run


def measure_model(name: str, graph: Graph, personality: Personality, budget_s: float) -> ModelTiming:
    """Time the whole model, and each of its (non-metadata) ops in context."""
    bias = float(personality.device(DEVICE).get("profiler_bias_ms", 0.0))
    times = op_ms(graph, budget_s, bias, layouts=True)
    samples = []
    for op in graph.ops:
        features = op_features(graph, op)
        if op.name in times and family_of_features(features) != "metadata":
            samples.append(
                {
                    "op": op.name,
                    "op_type": op.op_type,
                    "features": features,
                    "ms": max(MIN_MS, times[op.name]),
                    "source": "eval",
                    "model": name,
                }
            )
    return ModelTiming(name, graph, samples, time_graph(graph, budget_s))


def measure_models(
    graphs: dict[str, Graph], personality: Personality, budget_s: float, console: Console | None = None
) -> list[ModelTiming]:
    """Time every model of the set, with a progress bar."""
    with progress_bar(console) as bar:
        task = bar.add_task("measuring", total=len(graphs), label="")
        timings = []
        for name, graph in graphs.items():
            bar.update(task, label=name)
            timings.append(measure_model(name, graph, personality, budget_s))
            bar.update(task, advance=1)
        return timings


def _within(pred: float, true: float, tol: float = 0.10) -> bool:
    return abs(pred - true) <= tol * true


def _op_errors(model: CostModel, timing: ModelTiming) -> list[tuple[float, float]]:
    """(predicted, measured) kernel ms of the ops timed at MIN_SCORED_MS or more."""
    scored = [s for s in timing.samples if s["ms"] >= MIN_SCORED_MS]
    preds = model.predict(DEVICE, [s["features"] for s in scored])
    return [(p, s["ms"]) for p, s in zip(preds, scored, strict=True)]


def leave_one_model_out(personality: Personality, timings: list[ModelTiming]) -> dict[str, Any]:
    """The evaluation report (JSON-ready): per model and over all ops of the device."""
    rows, all_pairs = [], []
    dispatch = personality.dispatch_ms(DEVICE)
    for held in timings:
        others = [s for t in timings if t is not held for s in t.samples]
        model = CostModel(personality, extra_samples={DEVICE: others})
        pairs = _op_errors(model, held)
        all_pairs += pairs
        predicted = dispatch + sum(model.graph_ms(held.graph, DEVICE).values())
        rows.append(
            {
                "model": held.name,
                "ops": len(held.graph.ops),
                "measured_ms": round(held.measured_ms, 4),
                "predicted_ms": round(predicted, 4),
                "error_pct": round(100 * (predicted - held.measured_ms) / held.measured_ms, 2),
                "op_mape_pct": round(_mape(pairs), 2),
                "op_within_10_pct": round(_share_within(pairs), 2),
            }
        )
    return {
        "device": DEVICE,
        "chip_id": personality.chip_id,
        "profile_samples": len(personality.samples(DEVICE)),
        "models": rows,
        "ops": {
            "count": len(all_pairs),
            "mape_pct": round(_mape(all_pairs), 2),
            "within_10_pct": round(_share_within(all_pairs), 2),
        },
        "models_within_10": sum(abs(r["error_pct"]) <= 10 for r in rows),
    }


def _mape(pairs: list[tuple[float, float]]) -> float:
    return 100 * sum(abs(p - t) / t for p, t in pairs) / max(1, len(pairs))


def _share_within(pairs: list[tuple[float, float]]) -> float:
    return 100 * sum(_within(p, t) for p, t in pairs) / max(1, len(pairs))
