"""GEMM rate against the FMA ceiling on the GPU, timed with Vulkan timestamp queries through the ragc backend.

    python bench/gemm.py                 # 4096^3 fp32 GEMM, every tile in TILES, and the FMA-bound kernel
    python bench/gemm.py --n 256 --quick # a smoke run (lavapipe: a correctness check, not GPU performance)

Prints GFLOP/s of each and the ratio best GEMM / FMA ceiling; writes $OUT/gemm.json when OUT is set.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from codegen.artifact import TensorStore  # noqa: E402
from codegen.gpu import Step, assemble, lower  # noqa: E402
from codegen.gpu.lowering import Dispatch, grid  # noqa: E402
from codegen.gpu.ops.gemm import gemm_params  # noqa: E402
from ragc.bundle.single import single_partition  # noqa: E402
from ragc.ir import Graph, Op, Tensor  # noqa: E402
from runtime_min.backends.vulkan import VulkanBackend  # noqa: E402
from runtime_min.options import LoadOptions  # noqa: E402

TILES = {  # measured on an H200 at 4096^3: 36.3, 2.3, 30.5, 31.8 TFLOP/s; FMA ceiling 63.9
    "64x128x16/4x8": {"BM": 64, "BN": 128, "BK": 16, "TM": 4, "TN": 8},
    "128x128x8/8x8": {"BM": 128, "BN": 128, "BK": 8, "TM": 8, "TN": 8},
    "128x64x16/8x4": {"BM": 128, "BN": 64, "BK": 16, "TM": 8, "TN": 4},
    "64x64x16/4x4": {"BM": 64, "BN": 64, "BK": 16, "TM": 4, "TN": 4},
}


def time_program(
    backend: VulkanBackend,
    graph: Graph,
    steps: list[Step],
    feeds: dict,
    reps: int,
    label: str | None = None,
    span: bool = False,
) -> tuple[float, dict]:
    """Median GPU time (s) of the program's dispatches (those of `label` only, when given; `span`: from the first
    one's start to the last one's end, for dispatches that may overlap) over `reps` runs after one warm-up, and
    the last outputs."""
    artifact = assemble(graph, steps, {}, "bench", TensorStore())
    with tempfile.TemporaryDirectory() as tmp:
        exe = backend.prepare(*single_partition(artifact, graph, Path(tmp), "gpu"))
    outputs = exe.run(feeds)
    samples = []
    for _ in range(reps):
        outputs = exe.run(feeds)
        timings = [t for t in exe.timings() if label in (None, t.label)]
        if span:
            samples.append((max(t.start_ns + t.duration_ns for t in timings) - min(t.start_ns for t in timings)) * 1e-9)
        else:
            samples.append(sum(t.duration_ns for t in timings) * 1e-9)
    exe.close()
    return statistics.median(samples), outputs


def gemm(
    backend: VulkanBackend, n: int, tile: dict | None, reps: int, a: np.ndarray, b: np.ndarray
) -> tuple[float, float]:
    """GFLOP/s of C = A x B (n x n) with `tile` (None: what codegen.gpu picks for a MatMul), and the max error of
    C's first rows relative to float64."""
    tensors = {name: Tensor(name, (n, n), "float32") for name in ("a", "b", "c")}
    graph = Graph(ops=[Op("matmul", "MatMul", ["a", "b"], ["c"])], tensors=tensors, inputs=["a", "b"], outputs=["c"])
    if tile is None:
        graph, steps, _ = lower(graph)
    else:
        params, groups = gemm_params(n, n, n, 1, tile=tile, a_rs=n, a_cs=1, a_base="0u", b_rs=n, b_cs=1, b_base="0u")
        steps = [Step("gemm", Dispatch("gemm.comp.j2", params, ("c", "a", "b"), groups))]
    seconds, out = time_program(backend, graph, steps, {"a": a, "b": b}, reps)
    want = a[:8].astype(np.float64) @ b.astype(np.float64)
    error = float(np.max(np.abs(out["c"][:8] - want)) / np.max(np.abs(want)))
    return 2 * n**3 / seconds * 1e-9, error


def fma_peak(backend: VulkanBackend, invocations: int, iterations: int, reps: int) -> float:
    """GFLOP/s of the register-only FMA kernel: the ceiling a compute-bound kernel can reach."""
    chains, local = 8, 256
    graph = Graph(ops=[], tensors={"out": Tensor("out", (invocations,), "float32")}, inputs=[], outputs=["out"])
    params = {"local": local, "chains": chains, "iterations": iterations}
    steps = [Step("fma", Dispatch("fma_peak.comp.j2", params, ("out",), grid(invocations, local)))]
    seconds, _ = time_program(backend, graph, steps, {}, reps)
    return invocations * iterations * chains * 4 * 2 / seconds * 1e-9


def open_timed_backend() -> VulkanBackend:
    """The Vulkan backend with timestamp queries, its device printed (and a warning on a CPU implementation)."""
    backend = VulkanBackend(LoadOptions.make({"timestamps": True}))
    print(backend.describe(), flush=True)
    if backend.device_type == "cpu":
        print("note: a CPU Vulkan device (lavapipe): these numbers are not GPU performance")
    return backend


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="small FMA kernel and only the default tile (emit's)")
    args = ap.parse_args()
    backend = open_timed_backend()
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((args.n, args.n), dtype=np.float32) for _ in range(2))
    peak = fma_peak(backend, 1 << (14 if args.quick else 20), 256 if args.quick else 4096, args.reps)
    print(f"fma ceiling: {peak:10.1f} GFLOP/s", flush=True)
    results = {}
    tiles = {"emit default": None} | ({} if args.quick else TILES)
    for name, tile in tiles.items():
        rate, error = gemm(backend, args.n, tile, args.reps, a, b)
        results[name] = {"gflops": rate, "rel_error": error}
        print(
            f"gemm {args.n}^3 tile {name:24s}: {rate:10.1f} GFLOP/s  ratio {rate / peak:.3f}  rel.err {error:.1e}",
            flush=True,
        )
    best = max(results, key=lambda k: results[k]["gflops"])
    ratio = results[best]["gflops"] / peak
    print(f"best tile {best}: {results[best]['gflops']:.1f} GFLOP/s = {ratio:.3f} of the FMA ceiling (goal >= 0.5)")
    backend.close()
    if os.environ.get("OUT"):
        report = {
            "device": backend.device_name,
            "n": args.n,
            "fma_gflops": peak,
            "gemm": results,
            "best": best,
            "ratio": ratio,
        }
        Path(os.environ["OUT"], "gemm.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
