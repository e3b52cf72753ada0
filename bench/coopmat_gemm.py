"""fp16 GEMM on cooperative matrices against the device's cooperative-matrix ceiling, through the ragc backend.

    python bench/coopmat_gemm.py             # 4096^3 fp16 GEMM (fp32 accumulation) and the peak kernel
    python bench/coopmat_gemm.py --n 1024    # a smaller check

Needs VK_KHR_cooperative_matrix with the 16x8x16 fp16 shape (the lent H200; lavapipe has none: it exits saying
so). Prints TFLOP/s of the GEMM (Vulkan timestamps, median), of the peak kernel (coopmat_peak.comp.j2: register-only
MulAdd chains), the vendor's published dense fp16 figure, and the ratios; writes $OUT/coopmat_gemm.json when set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.gemm import time_program  # noqa: E402
from codegen.gpu import Step, lower  # noqa: E402
from codegen.gpu.lowering import Dispatch  # noqa: E402
from codegen.gpu.ops.gemm import COOPMAT_SHAPE  # noqa: E402
from codegen.gpu.precision import Precision  # noqa: E402
from ragc.ir import Graph, Op, Tensor  # noqa: E402
from runtime_min.backends.vulkan import VulkanBackend  # noqa: E402
from runtime_min.options import LoadOptions  # noqa: E402

VENDOR_TFLOPS = {"H200": 989.4, "H100": 989.4}  # NVIDIA's dense FP16 Tensor Core figures (SXM, no sparsity)
PRECISION = Precision("mixed", "float16", "float32", coopmat=True)


def coopmat_gemm(backend: VulkanBackend, n: int, reps: int) -> tuple[float, float]:
    """TFLOP/s of C = A x B (n x n, A and B fp16 tensors, C fp32) on cooperative matrices, and C's error relative
    to float64 on its first rows."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(np.float16) for _ in range(2))
    tensors = {
        "a": Tensor("a", (n, n), "float32"),
        "b": Tensor("b", (n, n), "float32"),
        "ah": Tensor("ah", (n, n), "float32"),
        "c": Tensor("c", (n, n), "float32"),
    }
    # a Relu stores A in fp16 inside the partition (B is a weight, stored fp16); the GEMM is then timed alone
    ops = [Op("relu", "Relu", ["a"], ["ah"]), Op("matmul", "MatMul", ["ah", "b"], ["c"])]
    tensors["b"] = Tensor("b", (n, n), "float32", b.astype(np.float32))
    graph = Graph(ops=ops, tensors=tensors, inputs=["a"], outputs=["c"])
    graph, steps, alias = lower(graph, PRECISION)
    assert any(s.dispatch.template == "coopmat_gemm.comp.j2" for s in steps), "the GEMM did not take coopmat"
    feeds = {"a": np.abs(a).astype(np.float32)}
    seconds, out = time_program(backend, graph, steps, feeds, reps, label="matmul")
    want = np.abs(a[:8]).astype(np.float64) @ b.astype(np.float64)
    return 2 * n**3 / seconds * 1e-12, float(np.max(np.abs(out["c"][:8] - want)) / np.max(np.abs(want)))


def coopmat_peak(backend: VulkanBackend, workgroups: int, iterations: int, reps: int) -> float:
    """TFLOP/s of the register-only MulAdd kernel: what a cooperative-matrix kernel can reach at best."""
    local, chains = 128, 8
    subgroups = workgroups * local // 32
    tensors = {
        "out": Tensor("out", (subgroups * chains * 128,), "float32"),
        "a": Tensor("a", (256,), "float16", np.ones(256, np.float16) * np.float16(1e-3)),
        "b": Tensor("b", (128,), "float16", np.ones(128, np.float16) * np.float16(1e-3)),
    }
    graph = Graph(ops=[], tensors=tensors, inputs=[], outputs=["out"])
    params = {"local": local, "chains": chains, "iterations": iterations}
    dispatch = Dispatch(
        "coopmat_peak.comp.j2", params, ("out", "a", "b"), (workgroups, 1, 1), requires=(COOPMAT_SHAPE,), subgroup=32
    )
    seconds, _ = time_program(backend, graph, [Step("peak", dispatch)], {}, reps)
    return subgroups * iterations * chains * 2 * 16 * 8 * 16 / seconds * 1e-12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    backend = VulkanBackend(LoadOptions.make({"timestamps": True}))
    if not backend.dev.features.get(COOPMAT_SHAPE):
        sys.exit(f"{backend.device_name} has no cooperative matrix {COOPMAT_SHAPE}; run this on the H200")
    shapes = sorted(k for k in backend.dev.features if k.startswith("coopmat"))
    peak = coopmat_peak(backend, 132 * 64, 4096, args.reps)
    gemm, err = coopmat_gemm(backend, args.n, args.reps)
    vendor = next((v for k, v in VENDOR_TFLOPS.items() if k in str(backend.device_name)), None)
    result = {"device": str(backend.device_name), "shapes": shapes, "n": args.n, "gemm_tflops": gemm,
              "rel_error": err, "peak_tflops": peak, "ratio_to_peak": gemm / peak, "vendor_tflops": vendor,
              "ratio_to_vendor": gemm / vendor if vendor else None}  # fmt: skip
    print(f"{backend.device_name}: cooperative-matrix shapes {', '.join(shapes)}")
    print(f"fp16 {args.n}^3 GEMM (fp32 accumulation): {gemm:.1f} TFLOP/s, error {err:.2e}")
    print(f"cooperative-matrix peak (own kernel): {peak:.1f} TFLOP/s; ratio {gemm / peak:.2f}")
    if vendor:
        print(f"vendor dense fp16: {vendor:.1f} TFLOP/s; ratio {gemm / vendor:.2f}")
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "coopmat_gemm.json").write_text(json.dumps(result, indent=1))
    backend.close()


if __name__ == "__main__":
    main()
