"""Real exports (bench/skeletons, refilled with their deterministic random weights) compiled GPU-first for the
Ryzen AI target and run by runtime_min on this machine's Vulkan device (lavapipe on the 2-core box), against
onnxruntime CPU on the same random inputs: CPU partitions left and the max relative error per model.

    python bench/skeleton_gpu_check.py bert_base gpt2 llama4 vit_b_16 [--out FILE.json]

Correctness only: lavapipe runs these in seconds per inference, nothing here is a speed figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

import runtime_min  # noqa: E402
from ragc.cli.report import random_feeds  # noqa: E402
from ragc.pipeline import compile_model  # noqa: E402
from ragc.profiler.skeleton import fill  # noqa: E402


def check(name: str, folder: Path) -> dict:
    model = folder / f"{name}.onnx"
    fill(ROOT / "bench" / "skeletons" / f"{name}.onnx", model)
    result = compile_model(model, folder / f"{name}-gpu", devices="gpu", target="ryzen-ai-9-hx-370")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = runtime_min.load(result.bundle)
    feeds = random_feeds(plan.inputs, 3)
    got = plan.run(feeds)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    want = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))
    errors = [float(np.abs(got[k] - want[k]).max() / max(np.abs(want[k]).max(), 1e-12)) for k in got]
    plan.close()
    return {
        "model": name,
        "cpu_partitions": sum(p.device == "cpu" for p in result.partitions),
        "gpu_partitions": sum(p.device == "gpu" for p in result.partitions),
        "max_rel_err_vs_onnxruntime": max(errors),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="names of bench/skeletons/*.onnx")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            rows.append(check(name, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
