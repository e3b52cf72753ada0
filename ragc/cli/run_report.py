"""What `ragc run` reports: latency statistics, the prediction labelled with the chip it was made for, measured
against predicted per partition and, for streams, per pipeline stage; as tables or as one JSON document."""

from __future__ import annotations

from typing import Any

import numpy as np

from ragc.cli.explain_show import chip_label
from ragc.cli.output import table
from ragc.cli.runner import Timed, step_medians


def latency_stats(seconds: list[float]) -> dict[str, float]:
    """min, median, mean, p90, p99 and max in ms, and runs per second over the timed runs."""
    ms = np.asarray(seconds, dtype=float) * 1e3
    stats = {"min": ms.min(), "median": np.median(ms), "mean": ms.mean(), "p90": np.percentile(ms, 90)}
    stats |= {"p99": np.percentile(ms, 99), "max": ms.max()}
    return {k: float(v) for k, v in stats.items()} | {"runs_per_s": float(len(ms) / (ms.sum() / 1e3 or 1e-12))}


def prediction(plan: Any, this_chip: str) -> dict[str, Any]:
    """The plan's prediction and the chip it was made for, against the chip it runs on."""
    chip = str(plan.manifest.get("chip_id") or "unknown")
    same = chip == this_chip
    throughput = plan.schedule.get("objective") == "throughput"
    manifest = plan.manifest
    return {
        "predicted_ms": manifest.get("predicted_ms"),
        "for_chip": chip,
        "this_chip": this_chip,
        "same_chip": same,
        "kind": "slowest stage" if throughput else "latency",
    }


def prediction_line(p: dict[str, Any]) -> str:
    if p["predicted_ms"] is None:
        return "the plan holds no prediction"
    what = "slowest pipeline stage" if p["kind"] == "slowest stage" else "latency"
    head = f"predicted {what} {p['predicted_ms']:.3f} ms"
    if p["same_chip"]:
        return f"{head} for this chip ({p['this_chip']})"
    return f"{head} for {chip_label(p['for_chip'])}; this chip: {p['this_chip']}, so it is not a prediction for it"


def partition_rows(plan: Any, timed: Timed) -> list[dict[str, Any]]:
    """Per partition: where it was planned and where it ran, its ops, predicted and median measured ms."""
    medians = step_medians(timed.steps)
    simulated = getattr(plan.options, "npu", None) == "sim" and "npu" not in plan.fallbacks
    rows = []
    for part in plan.schedule["partitions"]:
        ran_on, measured = medians.get(part["id"], (None, None))
        if ran_on == "npu" and simulated:
            ran_on = "npu (simulator on the host)"
        rows.append(
            {
                "id": part["id"],
                "planned_on": part["device"],
                "ran_on": ran_on,
                "fallback": plan.fallbacks.get(part["device"]),
                "ops": len(part["ops"]),
                "predicted_ms": part.get("predicted_ms"),
                "measured_ms": measured,
            }
        )
    return rows


def stage_rows(plan: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Throughput plans: per pipeline stage, its partitions, predicted and measured (median per frame) ms."""
    by_id = {r["id"]: r for r in rows}
    stages = plan.schedule.get("stages") or []
    return [
        {
            "stage": k,
            "partitions": list(stage),
            "processors": sorted({by_id[p]["ran_on"] or "-" for p in stage}),
            "predicted_ms": sum(by_id[p]["predicted_ms"] or 0.0 for p in stage),
            "measured_ms": sum(by_id[p]["measured_ms"] or 0.0 for p in stage),
        }
        for k, stage in enumerate(stages)
        if all(p in by_id for p in stage)
    ]


def partition_table(rows: list[dict[str, Any]], title: str) -> Any:
    t = table("partition", "planned on", "ran on", "ops", "predicted ms", "measured ms", title=title,
              right=("ops", "predicted ms", "measured ms"))  # fmt: skip
    for r in rows:
        ran_on = r["ran_on"] or "-"
        if r["fallback"] and r["ran_on"] == "cpu":
            ran_on = "cpu (fallback)"
        t.add_row(r["id"], r["planned_on"], ran_on, str(r["ops"]), _ms(r["predicted_ms"]), _ms(r["measured_ms"]))
    return t


def stage_table(stages: list[dict[str, Any]]) -> Any:
    t = table("stage", "partitions", "ran on", "predicted ms", "measured ms", right=("predicted ms", "measured ms"),
              title="pipeline stages (median per frame)")  # fmt: skip
    for s in stages:
        t.add_row(str(s["stage"]), ", ".join(s["partitions"]), ", ".join(s["processors"]), _ms(s["predicted_ms"]),
                  _ms(s["measured_ms"]))  # fmt: skip
    return t


def latency_line(stats: dict[str, float], runs: int, warmup: int) -> str:
    figures = ", ".join(f"{k} {stats[k]:.3f}" for k in ("min", "median", "mean", "p90", "p99", "max"))
    return (
        f"median latency over {runs} run(s): {stats['median']:.3f} ms (after {warmup} warm-up); "
        f"{figures} ms; {stats['runs_per_s']:.1f} runs/s"
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
