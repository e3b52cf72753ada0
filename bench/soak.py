"""Soak runtime_min: run a plan many times and print resident memory before and after.

    python bench/soak.py [PLAN_DIR] [--runs 10000] [--npu sim] [--devices cpu,gpu,npu]

Without PLAN_DIR it compiles examples/tinynet.onnx into a temporary folder for the Ryzen AI target: on the CPU only,
or with its convolutions on the GPU and its classifier on the NPU when --devices names them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import runtime_min

ROOT = Path(__file__).resolve().parent.parent
WARM_UP = 100
TARGET = "ryzen-ai-9-hx-370"


def resident_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def example_plan(folder: Path, devices: str) -> Path:
    from ragc.pipeline import compile_model

    place = [rule for rule, device in (("Conv=gpu", "gpu"), ("fc=npu", "npu")) if device in devices.split(",")]
    model = ROOT / "examples" / "tinynet.onnx"
    return compile_model(model, folder / "plan", devices=devices, target=TARGET, place=place).bundle


def soak(plan_dir: Path, runs: int, options: dict[str, str]) -> None:
    with runtime_min.load(plan_dir, **options) as plan:
        rng = np.random.default_rng(0)
        feeds = {s.name: rng.standard_normal(s.shape).astype(s.dtype) for s in plan.inputs}
        first = plan.run(feeds)
        for _ in range(WARM_UP):
            plan.run(feeds)
        before = resident_mib()
        start = time.perf_counter()
        for _ in range(runs):
            out = plan.run(feeds)
        seconds = time.perf_counter() - start
        after = resident_mib()
        same = all(out[k].tobytes() == first[k].tobytes() for k in first)
    print(f"plan: {plan_dir} ({', '.join(plan.processors)})")
    print(f"runs: {runs} after {WARM_UP} warm-up, {seconds / runs * 1e3:.3f} ms each, outputs bit-identical: {same}")
    print(f"RSS before: {before:.1f} MiB, after: {after:.1f} MiB, growth: {after - before:+.2f} MiB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan", nargs="?", type=Path, help="a compiled bundle (default: compile the example)")
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--npu", choices=["xrt", "sim"], help="NPU backend, as runtime_min.load(npu=...)")
    parser.add_argument("--devices", default="cpu", help="processors of the example plan (default: cpu)")
    args = parser.parse_args(argv)
    options = {"npu": args.npu} if args.npu else {}
    if args.plan is not None:
        soak(args.plan, args.runs, options)
        return 0
    with tempfile.TemporaryDirectory() as folder:
        soak(example_plan(Path(folder), args.devices), args.runs, options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
