"""GEMM rate for the shapes of batch-1 transformers against the FMA ceiling: the plan codegen.gpu picks
(codegen/gpu/ops/gemm.py `gemm_plan`: tile and split-K) against every tile x split, timed with Vulkan timestamp
queries through the ragc backend. Each timing runs COPIES independent GEMMs of the shape in one program (the GPU
busy, clocks up, as inside a model) and divides the span from the first dispatch's start to the last one's end; a
plan's time includes its split-K reduction.

    bash -c '. bench/device_env.sh && python3 bench/transformer_gemm.py'   # on the lent H200
    python bench/transformer_gemm.py --quick                               # lavapipe: a correctness smoke run

Prints a markdown table (TFLOP/s and fraction of the FMA ceiling measured by bench/gemm.py's kernel) and writes
$OUT/transformer_gemm.json (every plan's time) when OUT is set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import nullcontext
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.gemm import fma_peak, open_timed_backend, time_program  # noqa: E402
from bench.gpu_kernels import forced  # noqa: E402
from codegen.gpu import lower  # noqa: E402
from codegen.gpu.ops import gemm  # noqa: E402
from ragc.ir import Graph, Op, Tensor  # noqa: E402
from runtime_min.backends.vulkan import VulkanBackend  # noqa: E402

SHAPES = [  # (M, K, N): BERT/GPT-2 at s128, ViT-B/16 (197 tokens), the 4-layer Llama (d 1024), a decode step
    *((m, k, n) for m in (128, 197) for k, n in ((768, 2304), (768, 768), (768, 3072), (3072, 768))),
    *((128, k, n) for k, n in ((1024, 1024), (1024, 2816), (2816, 1024), (1024, 256))),
    (1, 768, 3072),
]
TILES = {"64x128": gemm.LARGE, "64x64": gemm.MEDIUM, "32x64": gemm.SMALL, "16x64": gemm.THIN}
SPLITS = (1, 2, 3, 4, 6, 8, 12, 16)
COPIES = 16


def _graph(m: int, k: int, n: int) -> Graph:
    tensors = {"a": Tensor("a", (m, k), "float32"), "b": Tensor("b", (k, n), "float32")}
    ops = []
    for c in range(COPIES):
        tensors[f"c{c}"] = Tensor(f"c{c}", (m, n), "float32")
        ops.append(Op(f"matmul{c}", "MatMul", ["a", "b"], [f"c{c}"]))
    return Graph(ops=ops, tensors=tensors, inputs=["a", "b"], outputs=[f"c{c}" for c in range(COPIES)])


def plans(m: int, k: int) -> dict[str, gemm.GemmPlan]:
    """Every tile (THIN only for M <= 16) with every split that leaves each split MIN_SPLIT_STEPS tiles deep."""
    out = {}
    for name, tile in TILES.items():
        if (tile is gemm.THIN) != (m <= 16):
            continue
        for splits in SPLITS:
            if splits > 1 and k // splits < gemm.MIN_SPLIT_STEPS * tile["BK"]:
                continue
            k_split = -(-k // splits // tile["BK"]) * tile["BK"]
            plan = gemm.GemmPlan(tile, -(-k // k_split), k_split) if splits > 1 else gemm.GemmPlan(tile)
            out[f"{name}" + (f", split-K {plan.splits}" if plan.splits > 1 else "")] = plan
    return out


def run(backend: VulkanBackend, shape: tuple[int, int, int], plan: gemm.GemmPlan | None, reps: int, feeds: dict):
    """(seconds per GEMM, relative error vs float64) under `plan` (None: the one gemm_plan picks)."""
    m, k, n = shape
    with forced(gemm, "gemm_plan", lambda *args, **kwargs: plan) if plan is not None else nullcontext():
        graph, steps, _ = lower(_graph(m, k, n))
    seconds, out = time_program(backend, graph, steps, feeds, reps, span=True)
    want = feeds["a"].astype(np.float64) @ feeds["b"].astype(np.float64)
    return seconds / COPIES, float(np.max(np.abs(out["c0"] - want)) / np.max(np.abs(want)))


def label(plan: gemm.GemmPlan) -> str:
    return f"{plan.tile['BM']}x{plan.tile['BN']}" + (f", split-K {plan.splits}" if plan.splits > 1 else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="two shapes, two plans each, a small FMA kernel")
    args = ap.parse_args()
    backend = open_timed_backend()
    reps = 2 if args.quick else args.reps
    peak = fma_peak(backend, 1 << (14 if args.quick else 20), 256 if args.quick else 4096, reps) * 1e-3
    print(f"\nFMA ceiling: {peak:.1f} TFLOP/s\n")
    print("| M | K | N | rule's plan | TFLOP/s | / ceiling | best plan | TFLOP/s | / ceiling | best / rule |")
    print("|---|---|---|---|---:|---:|---|---:|---:|---:|")
    rng, rows = np.random.default_rng(0), []
    for m, k, n in SHAPES[:2] if args.quick else SHAPES:
        feeds = {"a": rng.standard_normal((m, k), np.float32), "b": rng.standard_normal((k, n), np.float32)}
        flops = 2 * m * n * k
        candidates = plans(m, k)
        swept = {}
        for name, plan in list(candidates.items())[: 2 if args.quick else None]:
            seconds, error = run(backend, (m, k, n), plan, reps, feeds)
            assert error < 1e-4, f"wrong result for {m}x{k}x{n} with {name}: relative error {error:.1e}"
            swept[name] = seconds
        rule_s, _ = run(backend, (m, k, n), None, reps, feeds)
        best, chosen = min(swept, key=swept.get), label(gemm.gemm_plan(m, n, k, 1))
        r_rule, r_best = flops / rule_s * 1e-12, flops / swept[best] * 1e-12
        print(
            f"| {m} | {k} | {n} | {chosen} | {r_rule:.3g} | {r_rule / peak:.3f} | {best} "
            f"| {r_best:.3g} | {r_best / peak:.3f} | {rule_s / swept[best]:.2f} |",
            flush=True,
        )
        rows.append({"m": m, "k": k, "n": n, "rule": chosen, "rule_s": rule_s, "plans": swept})
    backend.close()
    if os.environ.get("OUT"):
        report = {"device": backend.device_name, "fma_tflops": peak, "copies": COPIES, "shapes": rows}
        Path(os.environ["OUT"], "transformer_gemm.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
