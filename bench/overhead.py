"""What runtime_min itself adds per run (issue 15's hot-path budget: 8 us + 3 us per partition over its backends):

1. examples/tinynet.onnx as a one-partition CPU plan against plain onnxruntime on the same cleaned partition;
2. a 10-partition CPU plan (tinynet cut into ten) against the same ten ONNX partitions run by onnxruntime back to
   back in one loop, with the same session options runtime_min uses.

Both sides use one onnxruntime thread and run interleaved in one process (rounds of N runs each, medians of the
per-round means), so a machine that changes speed hurts both alike. Prints a markdown table; --json for the raw figures.

    python bench/overhead.py [--rounds 30] [--runs 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

import runtime_min  # noqa: E402
from ragc.pipeline import compile_model  # noqa: E402

MODEL = ROOT / "examples" / "tinynet.onnx"
THREADS = 1  # one onnxruntime thread on both sides: thread-pool spinning would swamp the microseconds measured


def sessions(plan: runtime_min.Plan, spinning: bool) -> list[tuple[ort.InferenceSession, list[str], list[str]]]:
    """The plan's CPU partitions as plain onnxruntime sessions with the options runtime_min gives them."""
    out = []
    for part in plan.bundle.partitions:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = THREADS
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        path = plan.path / part.artifact.main
        out.append(
            (
                ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]),
                [s.name for s in part.outputs],
                [s.name for s in part.inputs],
            )
        )
    return out


def by_hand(chain, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    values = dict(feeds)
    for session, outputs, inputs in chain:
        values.update(zip(outputs, session.run(outputs, {n: values[n] for n in inputs}), strict=True))
    return values


def interleaved(a, b, rounds: int, runs: int) -> tuple[float, float]:
    """Median over rounds of the mean us per call of `a` and of `b`, alternating which goes first."""
    times: dict[str, list[float]] = {"a": [], "b": []}
    for r in range(rounds):
        for key, fn in (("a", a), ("b", b)) if r % 2 == 0 else (("b", b), ("a", a)):
            start = time.perf_counter()
            for _ in range(runs):
                fn()
            times[key].append((time.perf_counter() - start) / runs * 1e6)
    return statistics.median(times["a"]), statistics.median(times["b"])


def measure(bundle: Path, rounds: int, runs: int) -> dict[str, float]:
    plan = runtime_min.load(bundle, cpu_threads=THREADS)
    feeds = {s.name: np.random.default_rng(0).random(s.shape).astype(s.dtype) for s in plan.inputs}
    chain = sessions(plan, spinning=len(plan.bundle.partitions) == 1)
    want, got = by_hand(chain, feeds), plan.run(feeds)
    assert all(np.array_equal(got[k], want[k]) for k in got)
    for _ in range(50):
        plan.run(feeds), by_hand(chain, feeds)
    ragc_us, ort_us = interleaved(lambda: plan.run(feeds), lambda: by_hand(chain, feeds), rounds, runs)
    parts = len(plan.bundle.partitions)
    return {
        "partitions": parts,
        "runtime_min_us": round(ragc_us, 2),
        "onnxruntime_us": round(ort_us, 2),
        "ratio": round(ragc_us / ort_us, 3),
        "added_us": round(ragc_us - ort_us, 2),
        "budget_us": 8 + 3 * parts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one = compile_model(MODEL, Path(tmp) / "one", devices="cpu", target="ryzen-ai-9-hx-370").bundle
        ops = [p.ops for p in runtime_min.load(one).bundle.partitions][0]
        cuts = ops[:: max(1, len(ops) // 10)][1:10]
        ten = compile_model(MODEL, Path(tmp) / "ten", devices="cpu", target="ryzen-ai-9-hx-370", cut_before=cuts).bundle
        rows = {
            "one partition": measure(one, args.rounds, args.runs),
            "ten partitions": measure(ten, args.rounds, args.runs),
        }
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print("| plan | partitions | runtime_min us | onnxruntime us | ratio | added us | budget us |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        cells = [r[k] for k in ("partitions", "runtime_min_us", "onnxruntime_us", "ratio", "added_us", "budget_us")]
        print(f"| {name} | " + " | ".join(map(str, cells)) + " |")


if __name__ == "__main__":
    main()
