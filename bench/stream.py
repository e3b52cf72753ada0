"""The assembly line: throughput of a CPU+GPU stream plan (objective throughput) against the best
single-processor plan run back to back, on the same model and inputs.

    python bench/stream.py --models resnet18,efficientnet_b0 --frames 200 [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import runtime_min  # noqa: E402
from bench import models  # noqa: E402
from ragc.cli.report import random_feeds  # noqa: E402
from ragc.pipeline import compile_model  # noqa: E402

PLANS = {  # label -> compile options
    "cpu": {"devices": "cpu"},
    "gpu": {"devices": "gpu"},
    "stream cpu+gpu": {"devices": "cpu,gpu", "objective": "throughput"},
}


def frames_per_s(plan: runtime_min.Plan, feeds: dict, frames: int, stream: bool) -> float:
    for _ in range(3):
        plan.run(feeds)
    start = time.perf_counter()
    if stream:
        count = sum(1 for _ in plan.stream((feeds for _ in range(frames)), depth=2))
    else:
        count = sum(1 for _ in range(frames) if plan.run(feeds) is not None)
    return count / (time.perf_counter() - start)


def measure(model_path: Path, frames: int, folder: Path) -> dict:
    row: dict = {}
    for label, options in PLANS.items():
        result = compile_model(model_path, folder / label.replace(" ", "_").replace("+", "_"), **options)
        plan = runtime_min.load(result.bundle)
        feeds = random_feeds(plan.inputs, 0)
        stream = options.get("objective") == "throughput"
        row[label] = {
            "frames_per_s": round(frames_per_s(plan, feeds, frames, stream), 2),
            "predicted_ms": round(result.predicted_ms, 4),
            "partitions": [(p.id, p.device, len(p.ops)) for p in result.partitions],
        }
        plan.close()
    best_single = max(row["cpu"]["frames_per_s"], row["gpu"]["frames_per_s"])
    row["speedup_vs_best_single"] = round(row["stream cpu+gpu"]["frames_per_s"] / best_single, 3)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,efficientnet_b0")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in models.select(models.model_set(), args.models):
            try:
                results[model.name] = measure(models.materialize(model), args.frames, Path(tmp))
            except Exception as exc:  # one model failing must not lose the others
                results[model.name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(model.name, json.dumps(results[model.name]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "stream.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
