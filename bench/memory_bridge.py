"""The memory bridge on a CPU+GPU plan: copies removed and time saved with zero-copy buffers on vs off.

    python bench/memory_bridge.py                       # examples/tinynet.onnx, its Convs on the GPU
    python bench/memory_bridge.py --model wide --mb 16  # x -> Relu (GPU) -> Sigmoid (CPU) -> Tanh (GPU), 16 MB tensors
    . bench/device_env.sh && python3 bench/memory_bridge.py   # on the lent GPU machine

Loads the plan twice (zero_copy=False: every tensor through staging; True: the bridge), checks both give the same
bits, then times them interleaved (median of --runs runs each, after warm-up), with plain numpy inputs and with
page-aligned inputs (runtime_min.empty_shared, importable by VK_EXT_external_memory_host). Reports
whole-run and GPU-step medians and the copies per run; writes $OUT/memory_bridge.json when OUT is set.
On lavapipe (this workstation's CPU Vulkan) the numbers check the machinery, not GPU performance.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import runtime_min  # noqa: E402
from ragc.pipeline import compile_model  # noqa: E402
from runtime_min.backends.base import CopyStats  # noqa: E402
from runtime_min.backends.shared_memory import empty_shared  # noqa: E402

TARGET = "ryzen-ai-9-hx-370"  # a target file: compiling needs no profiling of this machine


def wide_model(path: Path, mb: float) -> Path:
    """x -> Relu -> Sigmoid -> Tanh on [1, n] float32 tensors of `mb` megabytes, every tensor a plan output."""
    from onnx import TensorProto, helper

    n = max(1, int(mb * 2**20) // 4)
    ops = [("Relu", "x", "r"), ("Sigmoid", "r", "s"), ("Tanh", "s", "t")]
    value = {v: helper.make_tensor_value_info(v, TensorProto.FLOAT, [1, n]) for v in "xrst"}
    nodes = [helper.make_node(op, [i], [o], name=o) for op, i, o in ops]
    graph = helper.make_graph(nodes, "wide", [value["x"]], [value[v] for v in "rst"])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def compile_plan(args: argparse.Namespace, folder: Path) -> Path:
    if args.model == "wide":
        model, place = wide_model(folder / "wide.onnx", args.mb), ["*=cpu", "Relu=gpu", "Tanh=gpu"]
    else:
        model, place = Path(args.model if args.model != "tinynet" else ROOT / "examples" / "tinynet.onnx"), args.place
    return compile_model(model, folder / "plan", devices="cpu,gpu", target=TARGET, place=place).bundle


def make_feeds(plan: runtime_min.Plan, shared: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for spec in plan.inputs:
        feeds[spec.name] = empty_shared(spec.shape, spec.dtype) if shared else np.empty(spec.shape, spec.dtype)
        feeds[spec.name][...] = rng.standard_normal(spec.shape)
    return feeds


def gpu_ms(plan: runtime_min.Plan) -> float:
    return sum(s["duration_ms"] for s in plan.last_step_times() if s["device"] == "gpu")


def measure(plans: dict[str, runtime_min.Plan], feeds: dict[str, dict], runs: int, warmup: int) -> dict[str, dict]:
    """Median whole-run and GPU-step ms per plan, runs interleaved (in rotating order) so drift and order effects
    hit every plan alike."""
    total: dict[str, list[float]] = {k: [] for k in plans}
    gpu: dict[str, list[float]] = {k: [] for k in plans}
    keys = list(plans)
    for i in range(warmup + runs):
        for key in keys[i % len(keys) :] + keys[: i % len(keys)]:
            plan = plans[key]
            start = time.perf_counter()
            plan.run(feeds[key])
            if i >= warmup:
                total[key].append((time.perf_counter() - start) * 1e3)
                gpu[key].append(gpu_ms(plan))
    return {k: {"run_ms": statistics.median(total[k]), "gpu_step_ms": statistics.median(gpu[k])} for k in plans}


def copies_per_run(plan: runtime_min.Plan, before: CopyStats, runs: int) -> dict[str, float]:
    after = plan.copy_stats()
    return {
        "copies": (after.copies - before.copies) / runs,
        "mb_copied": (after.bytes_copied - before.bytes_copied) / runs / 2**20,
        "avoided": (after.avoided - before.avoided) / runs,
        "mb_avoided": (after.bytes_avoided - before.bytes_avoided) / runs / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tinynet", help="tinynet, wide, or a path to an .onnx file")
    parser.add_argument("--place", action="append", default=None, help="PATTERN=DEVICE (default Conv=gpu)")
    parser.add_argument("--mb", type=float, default=16.0, help="tensor size of --model wide")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    args.place = args.place or ["Conv=gpu"]
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    with tempfile.TemporaryDirectory() as tmp:
        bundle = compile_plan(args, Path(tmp))
        off = runtime_min.load(bundle, zero_copy=False)
        on = runtime_min.load(bundle, zero_copy=True)
        if off.fallbacks:
            sys.exit(f"the GPU is not available here ({off.fallbacks}); nothing to measure")
        plans = {"off": off, "on": on, "on_shared": on}
        feeds = {"off": make_feeds(off, False), "on": make_feeds(on, False), "on_shared": make_feeds(on, True)}
        want, got = off.run(feeds["off"]), on.run(feeds["on"])
        same = sorted(want) == sorted(got) and all(want[k].tobytes() == got[k].tobytes() for k in want)
        counts = {}
        for key in ("off", "on", "on_shared"):  # copies per run of each feeding path, counted apart
            before = plans[key].copy_stats()
            for _ in range(3):
                plans[key].run(feeds[key])
            counts[key] = copies_per_run(plans[key], before, 3)
        times = measure(plans, feeds, args.runs, args.warmup)
        report = {
            "device": on.tracks().get("gpu", "gpu"),
            "model": args.model,
            "runs": args.runs,
            "bit_identical": same,
            "timing": times,
            "copies_per_run": counts,
            "copies_removed_per_run": counts["off"]["copies"] - counts["on"]["copies"],
            "saved_ms": {k: times["off"]["run_ms"] - times[k]["run_ms"] for k in ("on", "on_shared")},
        }
        off.close()
        on.close()
    print(f"{report['device']}  model {args.model}  median of {args.runs} runs  same bits on/off: {same}")
    for key in ("off", "on", "on_shared"):
        c, t = counts[key], times[key]
        print(
            f"  {key:10s} run {t['run_ms']:8.3f} ms  gpu steps {t['gpu_step_ms']:8.3f} ms  "
            f"copies/run {c['copies']:5.1f} ({c['mb_copied']:.2f} MB)  avoided/run {c['avoided']:5.1f} "
            f"({c['mb_avoided']:.2f} MB)"
        )
    print(
        f"  saved per run: {report['saved_ms']['on']:.3f} ms (plain inputs), {report['saved_ms']['on_shared']:.3f} ms "
        "(page-aligned inputs)"
    )
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "memory_bridge.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
