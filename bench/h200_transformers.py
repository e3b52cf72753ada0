"""Issue 17's table: GPU-first plans of exported transformers (and ViT-B/16) against torch CUDA eager fp32, in one
script: CPU partitions left in each plan, outputs against onnxruntime (fp32), and medians. Run on the lent H200:

    bash -c '. bench/device_env.sh && python3 bench/h200_transformers.py --out $OUT'
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.interleave import interleaved_ms  # noqa: E402
from bench.real_models import export, torch_eager_ms  # noqa: E402

MODELS = ("bert_base", "gpt2", "llama4", "vit_b_16")


def measure(name: str, folder: Path) -> dict:
    import onnxruntime as ort

    import runtime_min
    from ragc.pipeline import compile_model

    model = export(name, folder)
    start = time.perf_counter()
    result = compile_model(model.path, folder / f"{name}-gpu", devices="gpu", target="ryzen-ai-9-hx-370")
    compile_s = time.perf_counter() - start
    cpu_parts = [p for p in result.partitions if p.device == "cpu"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = runtime_min.load(result.bundle)
    got = next(iter(plan.run(model.feeds).values()))
    session = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
    want = session.run(None, model.feeds)[0]
    rel = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-12))
    times = interleaved_ms({"ragc": lambda: plan.run(model.feeds)}, rounds=3, runs=10)
    return {
        "model": name,
        "ragc_gpu_first_ms": round(times["ragc"], 3),
        "torch_eager_fp32_ms": round(torch_eager_ms(model), 3),
        "cpu_partitions": len(cpu_parts),
        "cpu_ops": sorted({op for p in cpu_parts for op in p.ops})[:12],
        "gpu_partitions": sum(p.device == "gpu" for p in result.partitions),
        "max_rel_err_vs_onnxruntime": rel,
        "fallbacks": plan.fallbacks,
        "compile_s": round(compile_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--work", type=Path, default=Path("/tmp/ragc-real"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.models.split(","):
        try:
            rows.append(measure(name, args.work))
        except Exception as exc:  # one model failing must not cost the others
            rows.append({"model": name, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"})
        print(json.dumps(rows[-1]), flush=True)
        (args.out / "transformers.json").write_text(json.dumps(rows, indent=1))
    print("| model | ragc GPU-first ms | torch CUDA eager fp32 ms | ratio | CPU partitions | max rel err |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | error: {r['error']} |")
            continue
        ratio = r["ragc_gpu_first_ms"] / r["torch_eager_fp32_ms"]
        cells = [r["ragc_gpu_first_ms"], r["torch_eager_fp32_ms"], f"{ratio:.2f}", r["cpu_partitions"]]
        print(f"| {r['model']} | " + " | ".join(map(str, cells)) + f" | {r['max_rel_err_vs_onnxruntime']:.1e} |")


if __name__ == "__main__":
    main()
