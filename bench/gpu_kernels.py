"""Where a whole model's GPU time goes: each model run as one ragc GPU partition, its dispatches' GPU timestamps
summed per op type (and the slowest ops, with their GEMM shapes), against the run's wall time. Models are the
weightless skeletons of bench/skeletons (filled with random weights). Run on the lent GPU machine:

    bash -c '. bench/device_env.sh && python3 bench/gpu_kernels.py vit_b_16 bert_base'

`--attention-rows 1,2,4,8` also times each model's fused attention dispatches with R query rows per workgroup forced
(codegen/gpu/ops/attention.py `blocking`), the measurement its rule is set from.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ragc.costmodel.features import op_features  # noqa: E402
from ragc.profiler.gpu_bench import GpuGraphTimer, prepare_gpu  # noqa: E402
from ragc.profiler.zoo import model_set  # noqa: E402
from runtime_min.backends.vulkan import VulkanBackend  # noqa: E402
from runtime_min.options import LoadOptions  # noqa: E402


def timed(graph, backend: VulkanBackend, name: str) -> tuple[float, dict[str, float]] | None:
    """(wall ms, GPU ms per op) of the best of three half-second blocks of whole-graph runs, or None."""
    exe = prepare_gpu(backend, graph)
    if exe is None:
        return None
    timer = GpuGraphTimer(exe, graph, name)
    for _ in range(3):
        timer.block(0.5)
    exe.close()
    return min(timer.blocks, key=lambda b: b[0])


def attention_rows(name: str, graph, backend: VulkanBackend, choices: list[int]) -> None:
    """The model's GPU kernel ms with each forced R; only its attention dispatches change (an R beyond their query
    rows or shared memory keeps the rule's)."""
    from codegen.gpu.ops import attention

    rule = attention.blocking

    def fits(spec, rows: int) -> bool:
        return rows <= spec.q.rows and attention.shared_floats(rows, 16, spec) <= attention.SHARED_FLOATS

    try:
        for rows in choices:
            attention.blocking = lambda spec, r=rows: (r, attention.chunk_for(spec, r)) if fits(spec, r) else rule(spec)
            result = timed(graph, backend, name)
            kernels = sum(result[1].values()) if result else float("nan")
            print(f"{name}: R={rows}: kernels {kernels:.4f} ms")
    finally:
        attention.blocking = rule


def report(name: str, graph, backend: VulkanBackend, top: int) -> None:
    result = timed(graph, backend, name)
    if result is None:
        print(f"{name}: the GPU cannot run it whole")
        return
    wall, per_op = result
    ops = {op.name: op for op in graph.ops}
    by_type: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for op_name, ms in per_op.items():
        kind = ops[op_name].op_type if op_name in ops else op_name
        by_type[kind][0] += 1
        by_type[kind][1] += ms
    kernels = sum(per_op.values())
    print(f"\n## {name}: wall {wall:.3f} ms, kernels {kernels:.3f} ms over {len(per_op)} ops")
    print("| op type | ops | kernel ms | share |\n|---|---:|---:|---:|")
    for kind, (count, ms) in sorted(by_type.items(), key=lambda kv: -kv[1][1]):
        print(f"| {kind} | {count} | {ms:.3f} | {100 * ms / kernels:.1f}% |")
    print("\n| slowest op | type | m x k x n | ms | TFLOP/s |\n|---|---|---|---:|---:|")
    for op_name, ms in sorted(per_op.items(), key=lambda kv: -kv[1])[:top]:
        op = ops.get(op_name)
        f = op_features(graph, op) if op else {}
        shape = f"{f.get('gemm_m', 0):.0f} x {f.get('gemm_k', 0):.0f} x {f.get('gemm_n', 0):.0f}" if op else ""
        rate = f.get("flops", 0) / ms / 1e9 if ms else 0.0
        print(f"| {op_name} | {op.op_type if op else '?'} | {shape} | {ms:.4f} | {rate:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="names of bench/skeletons/*.onnx")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--attention-rows", help="comma list of R to force in the attention kernel, e.g. 1,2,4,8")
    args = parser.parse_args()
    graphs = model_set([str(ROOT / "bench" / "skeletons" / f"{m}.onnx") for m in args.models])
    backend = VulkanBackend(LoadOptions.make({"timestamps": True}))
    print(backend.device_name)
    try:
        for name, graph in graphs.items():
            report(name, graph, backend, args.top)
            if args.attention_rows:
                attention_rows(name, graph, backend, [int(r) for r in args.attention_rows.split(",")])
    finally:
        backend.close()


if __name__ == "__main__":
    main()
