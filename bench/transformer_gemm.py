"""GEMM rate for the shapes of batch-1 transformers against the FMA ceiling, before and after per-shape tiles and
split-K, timed with Vulkan timestamp queries through the ragc backend (the sum of each plan's dispatch times).

    bash -c '. bench/device_env.sh && python3 bench/transformer_gemm.py'   # on the lent H200
    python bench/transformer_gemm.py --quick                               # lavapipe: a correctness smoke run

"before" is the policy up to this change (64x128 tiles when they give 128 workgroups, else 64x64, 16x64 for
M <= 16; no split); "after" is what codegen.gpu emits now (codegen/gpu/ops/gemm.py: gemm_plan). Prints a
markdown table (TFLOP/s and fraction of the FMA ceiling measured by bench/gemm.py's kernel) and writes
$OUT/transformer_gemm.json when OUT is set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.gemm import fma_peak, open_timed_backend, time_program  # noqa: E402
from codegen.gpu import Step, lower  # noqa: E402
from codegen.gpu.lowering import Dispatch  # noqa: E402
from codegen.gpu.ops.gemm import LARGE, MEDIUM, THIN, gemm_params, gemm_plan  # noqa: E402
from ragc.ir import Graph, Op, Tensor  # noqa: E402
from runtime_min.backends.vulkan import VulkanBackend  # noqa: E402

SHAPES = [(m, k, n) for m in (1, 128, 256) for k, n in ((768, 768), (768, 3072), (3072, 768))]


def old_tile(m: int, n: int, batch: int) -> dict[str, int]:
    """The tile policy before per-shape planning (kept here only as the "before" column)."""
    if m <= 16:
        return THIN
    if m >= 64 and n >= 128 and batch * -(-m // 64) * -(-n // 128) >= 128:
        return LARGE
    return MEDIUM


def _graph(m: int, k: int, n: int) -> Graph:
    tensors = {
        "a": Tensor("a", (m, k), "float32"),
        "b": Tensor("b", (k, n), "float32"),
        "c": Tensor("c", (m, n), "float32"),
    }
    return Graph(ops=[Op("matmul", "MatMul", ["a", "b"], ["c"])], tensors=tensors, inputs=["a", "b"], outputs=["c"])


def run(backend: VulkanBackend, m: int, k: int, n: int, policy: str, reps: int, feeds: dict) -> tuple[float, float]:
    """(seconds, relative error vs float64) of C = A x B under `policy` ("before" or "after")."""
    graph = _graph(m, k, n)
    if policy == "after":
        graph, steps, _ = lower(graph)
    else:
        layout = {"a_rs": k, "a_cs": 1, "a_base": "0u", "b_rs": n, "b_cs": 1, "b_base": "0u"}
        params, groups = gemm_params(m, n, k, 1, old_tile(m, n, 1), **layout)
        steps = [Step("gemm", Dispatch("gemm.comp.j2", params, ("c", "a", "b"), groups))]
    seconds, out = time_program(backend, graph, steps, feeds, reps)
    want = feeds["a"].astype(np.float64) @ feeds["b"].astype(np.float64)
    return seconds, float(np.max(np.abs(out["c"] - want)) / np.max(np.abs(want)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="two shapes, few repetitions, a small FMA kernel")
    args = ap.parse_args()
    backend = open_timed_backend()
    reps = 2 if args.quick else args.reps
    peak = fma_peak(backend, 1 << (14 if args.quick else 20), 256 if args.quick else 4096, reps) * 1e-3
    print(f"\nFMA ceiling: {peak:.1f} TFLOP/s\n")
    print("| M | K | N | plan after | before TFLOP/s | before / ceiling | after TFLOP/s | after / ceiling | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|")
    rng, rows = np.random.default_rng(0), []
    for m, k, n in SHAPES[:2] if args.quick else SHAPES:
        feeds = {"a": rng.standard_normal((m, k), np.float32), "b": rng.standard_normal((k, n), np.float32)}
        flops = 2 * m * n * k
        (t0, e0), (t1, e1) = (run(backend, m, k, n, p, reps, feeds) for p in ("before", "after"))
        plan = gemm_plan(m, n, k, 1)
        label = f"{plan.tile['BM']}x{plan.tile['BN']}" + (f", split-K {plan.splits}" if plan.splits > 1 else "")
        r0, r1 = flops / t0 * 1e-12, flops / t1 * 1e-12
        print(
            f"| {m} | {k} | {n} | {label} | {r0:.3g} | {r0 / peak:.3f} | {r1:.3g} | {r1 / peak:.3f} | {t0 / t1:.2f} |"
        )
        assert max(e0, e1) < 1e-4, f"wrong result for {m}x{k}x{n}: relative errors {e0:.1e}, {e1:.1e}"
        rows.append({"m": m, "k": k, "n": n, "plan": label, "before_s": t0, "after_s": t1, "rel_error": max(e0, e1)})
    backend.close()
    if os.environ.get("OUT"):
        report = {"device": backend.device_name, "fma_tflops": peak, "shapes": rows}
        Path(os.environ["OUT"], "transformer_gemm.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
