"""Candidate plans timed on the chip: each built as a bundle, loaded by runtime_min and timed warm, interleaved in
rounds in the machine's usual state (see steady), and the measured best kept. The timings live in the personality,
keyed by what decides a plan's speed (model, placement, objective and the versions of ragc, onnxruntime and the
GPU driver), so a later compile reads them instead of timing again: the same personality gives the same bundle.

A plan with more processor boundaries wins only when its median beats a simpler one by more than the confidence
interval of the two (a boundary must pay for itself); ties go to fewer boundaries, then the lower prediction, then
the candidates' fixed order.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ragc.personality.store import Personality, save_personality
from ragc.placement.candidates import Candidate
from ragc.profiler.progress import bar_advance, progress_bar
from ragc.profiler.steady import BlockTimer, Gate, time_interleaved

BUDGET_S = 20.0  # default wall time of a whole tuning, timing included (the bundles' building is not)
ROUNDS = 5
Z = 1.96  # 95 % confidence interval


class PlanTimer(BlockTimer):
    """A loaded plan timed in blocks: each block's median wall ms of one run (latency) or of one frame in a stream."""

    def __init__(self, plan: Any, feeds: dict[str, np.ndarray], stream: bool, label: str) -> None:
        super().__init__(label)
        self.plan, self.feeds, self.stream, self.blocks = plan, feeds, stream, []

    def block(self, budget_s: float) -> None:
        self.plan.run(self.feeds)  # warm: the first run after another plan's pays cold caches
        samples, until = [], time.perf_counter() + budget_s
        while time.perf_counter() < until or len(samples) < 3:
            start = time.perf_counter()
            if self.stream:
                frames = 16
                sum(1 for _ in self.plan.stream((self.feeds for _ in range(frames)), depth=2))
                samples.append((time.perf_counter() - start) * 1e3 / frames)
            else:
                self.plan.run(self.feeds)
                samples.append((time.perf_counter() - start) * 1e3)
        self.blocks.append(statistics.median(samples))

    def walls(self) -> list[float]:
        return self.blocks

    def estimate(self) -> tuple[float, float]:
        """(median ms over the counted blocks, its standard error)."""
        blocks = self.counted(self.blocks)
        spread = statistics.stdev(blocks) if len(blocks) > 1 else 0.0
        return statistics.median(blocks), spread / math.sqrt(len(blocks))


def versions(personality: Personality) -> dict[str, str]:
    """What besides the plan decides its speed on this chip."""
    import onnxruntime

    from ragc.version import VERSION

    gpus = personality.data.get("chip", {}).get("gpus", [])
    return {
        "ragc": VERSION,
        "onnxruntime": onnxruntime.__version__,
        "gpu_driver": str([g.get("driver_version") for g in gpus]),
    }


def key(model_sha256: str, candidate: Candidate, objective: str, personality: Personality) -> str:
    text = json.dumps([model_sha256, sorted(candidate.placement.assignment.items()), objective, versions(personality)])
    return hashlib.sha256(text.encode()).hexdigest()


def tune(
    candidates: list[Candidate],
    build: Callable[[Candidate, Path], Path],
    personality: Personality,
    model_sha256: str,
    objective: str,
    budget_s: float = BUDGET_S,
) -> tuple[Candidate, dict[str, dict[str, float]]]:
    """The candidate to keep and every candidate's timing (name -> {"ms", "se_ms"}); times only those the
    personality has no timing of, then stores theirs in it (and saves it)."""
    stored = personality.data.setdefault("tuning", {})
    keys = {c.name: key(model_sha256, c, objective, personality) for c in candidates}
    missing = [c for c in candidates if keys[c.name] not in stored]
    if missing:
        for name, timing in _time(missing, build, objective == "throughput", budget_s).items():
            stored[keys[name]] = timing | {"candidate": name, "objective": objective}
        if personality.path is not None:
            save_personality(personality, personality.path)
    timings = {c.name: {"ms": stored[keys[c.name]]["ms"], "se_ms": stored[keys[c.name]]["se_ms"]} for c in candidates}
    chosen = choose(candidates, timings)
    kept = personality.data.setdefault("tuned_plans", {})
    if kept.get(f"{model_sha256}:{objective}") != chosen.placement.assignment:
        kept[f"{model_sha256}:{objective}"] = dict(sorted(chosen.placement.assignment.items()))
        if personality.path is not None:
            save_personality(personality, personality.path)
    return chosen, timings


def kept_plan(personality: Personality, model_sha256: str, objective: str) -> dict[str, str] | None:
    """The assignment the tuner kept last time for this model and objective, if any."""
    return personality.data.get("tuned_plans", {}).get(f"{model_sha256}:{objective}")


def choose(candidates: list[Candidate], timings: dict[str, dict[str, float]]) -> Candidate:
    """The fastest within the confidence interval of the best, preferring fewer boundaries, then the prediction."""
    best = min(candidates, key=lambda c: timings[c.name]["ms"])
    b = timings[best.name]

    def tied(c: Candidate) -> bool:
        t = timings[c.name]
        return t["ms"] - b["ms"] <= Z * math.hypot(t["se_ms"], b["se_ms"])

    order = {c.name: i for i, c in enumerate(candidates)}
    return min(
        (c for c in candidates if tied(c)), key=lambda c: (c.boundaries, c.placement.predicted_ms, order[c.name])
    )


def _time(candidates: list[Candidate], build, stream: bool, budget_s: float) -> dict[str, dict[str, float]]:
    import runtime_min

    plans = []
    with tempfile.TemporaryDirectory(prefix="ragc-tune-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            for cand in candidates:
                plan = runtime_min.load(build(cand, Path(tmp) / cand.name))
                feeds = {s.name: np.random.default_rng(0).random(s.shape).astype(s.dtype) for s in plan.inputs}
                plans.append(PlanTimer(plan, feeds, stream, cand.name))
            with progress_bar() as bar:
                task = bar.add_task("tuning", total=len(plans) * ROUNDS, label="")
                time_interleaved(plans, budget_s, ROUNDS, bar_advance(bar, task), Gate(extra_s=0.0))
        finally:
            for timer in plans:
                timer.plan.close()
    results = {}
    for timer in plans:
        ms, se = timer.estimate()
        results[timer.label] = {"ms": round(ms, 6), "se_ms": round(se, 6)}
    return results
