"""Where a whole model's GPU time goes: each model run as one ragc GPU partition, its dispatches' GPU timestamps
summed per op type (and the slowest ops, with their GEMM shapes), against the run's wall time. Models are the
weightless skeletons of bench/skeletons (filled with random weights). Run on the lent GPU machine:

    bash -c '. bench/device_env.sh && python3 bench/gpu_kernels.py vit_b_16 bert_base'

`--attention 4,8,16x32` also times each model with R query rows (and CH keys per chunk) forced in its fused attention
(codegen/gpu/ops/attention.py `blocking`), `--gemm-targets 128,256w` with the GEMM tiles' workgroup target (and
with "w" wider register tiles) forced, `--max-splits 1,16` the most split-K pieces of a GEMM or conv
(codegen/gpu/ops/gemm.py): the measurements those rules are set from.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from contextlib import ExitStack, contextmanager
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


@contextmanager
def forced(module, name: str, value):
    """`module.name` set to `value` for the block."""
    kept = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, kept)


def sweep(name: str, graph, backend: VulkanBackend, label: str, settings: dict[str, object]) -> None:
    """The model's GPU kernel ms (and its attention and GEMM share) under each setting, a context manager."""
    ops = _kernel_types(graph)
    for setting, context in settings.items():
        with context:
            result = timed(graph, backend, name)
        if result is None:
            print(f"{name}: {label}={setting}: the GPU cannot run it whole")
            continue
        per_type: dict[str, float] = defaultdict(float)
        for op_name, ms in result[1].items():
            per_type[ops.get(op_name, "?")] += ms
        gemm, attention = per_type["MatMul"] + per_type["Gemm"], per_type["ragc.FusedAttention"]
        kernels = sum(result[1].values())
        print(f"{name}: {label}={setting}: kernels {kernels:.4f} ms (attention {attention:.4f}, GEMMs {gemm:.4f})")


def attention_settings(choices: list[str]) -> dict[str, object]:
    """R or RxCH forced in every fused attention (codegen/gpu/ops/attention.py `blocking`) where it fits shared
    memory and the query rows; the rule's choice elsewhere."""
    from codegen.gpu.ops import attention

    rule = attention.blocking

    def force(rows: int, chunk: int | None):
        def pick(spec):
            ch = chunk or attention.chunk_for(spec, rows)
            fits = rows <= spec.q.rows and attention.shared_floats(rows, ch, spec) <= attention.SHARED_FLOATS
            return (rows, ch) if fits else rule(spec)

        return forced(attention, "blocking", pick)

    parsed = {c: [int(x) for x in c.split("x")] for c in choices}
    return {c: force(v[0], v[1] if len(v) > 1 else None) for c, v in parsed.items()}


WIDE = {  # 8 x 8 outputs per invocation where the tiles allow (fewer shared-memory reads per FMA)
    "LARGE": {"BM": 64, "BN": 128, "BK": 16, "TM": 8, "TN": 8},
    "MEDIUM": {"BM": 64, "BN": 64, "BK": 16, "TM": 8, "TN": 8},
    "SMALL": {"BM": 32, "BN": 64, "BK": 16, "TM": 4, "TN": 8},
}


def gemm_settings(choices: list[str]) -> dict[str, object]:
    """codegen/gpu/ops/gemm.py's TARGET_GROUPS (the workgroups its tiles and split-K aim for) forced, and with a
    "w" suffix the WIDE register tiles too, e.g. 256, 512w."""
    from codegen.gpu.ops import gemm

    @contextmanager
    def setting(choice: str):
        with ExitStack() as stack:
            stack.enter_context(forced(gemm, "TARGET_GROUPS", int(choice.rstrip("w"))))
            for name, tile in WIDE.items() if choice.endswith("w") else ():
                stack.enter_context(forced(gemm, name, tile))
            yield

    return {c: setting(c) for c in choices}


def split_settings(choices: list[str]) -> dict[str, object]:
    """codegen/gpu/ops/gemm.py's MAX_SPLITS forced (1: no split-K anywhere)."""
    from codegen.gpu.ops import gemm

    return {c: forced(gemm, "MAX_SPLITS", int(c)) for c in choices}


def _kernel_types(graph) -> dict[str, str]:
    """Op name -> the type of the GPU kernel it names (a fused attention keeps its second MatMul's name)."""
    from codegen.gpu.fuse import fuse
    from codegen.gpu.patterns import fuse_patterns

    return {op.name: op.op_type for op in fuse(fuse_patterns(graph)).ops}


def report(name: str, graph, backend: VulkanBackend, top: int) -> None:
    result = timed(graph, backend, name)
    if result is None:
        print(f"{name}: the GPU cannot run it whole")
        return
    wall, per_op = result
    ops, kinds = {op.name: op for op in graph.ops}, _kernel_types(graph)
    by_type: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    by_shape: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])  # GEMMs: count, ms, flops
    for op_name, ms in per_op.items():
        kind = kinds.get(op_name, op_name)
        by_type[kind][0] += 1
        by_type[kind][1] += ms
        if kind in ("MatMul", "Gemm") and op_name in ops:
            f = op_features(graph, ops[op_name])
            row = by_shape[f"{f.get('gemm_m', 0):.0f} x {f.get('gemm_k', 0):.0f} x {f.get('gemm_n', 0):.0f}"]
            row[0], row[1], row[2] = row[0] + 1, row[1] + ms, row[2] + f.get("flops", 0)
    kernels = sum(per_op.values())
    print(f"\n## {name}: wall {wall:.3f} ms, kernels {kernels:.3f} ms over {len(per_op)} ops")
    print("| kernel | ops | kernel ms | share |\n|---|---:|---:|---:|")
    for kind, (count, ms) in sorted(by_type.items(), key=lambda kv: -kv[1][1]):
        print(f"| {kind} | {count} | {ms:.3f} | {100 * ms / kernels:.1f}% |")
    print("\n| GEMM m x k x n | ops | ms each | TFLOP/s |\n|---|---:|---:|---:|")
    for shape, (count, ms, flops) in sorted(by_shape.items(), key=lambda kv: -kv[1][1]):
        print(f"| {shape} | {count:.0f} | {ms / count:.4f} | {flops / ms / 1e9:.2f} |")
    print("\n| slowest op | kernel | ms |\n|---|---|---:|")
    for op_name, ms in sorted(per_op.items(), key=lambda kv: -kv[1])[:top]:
        print(f"| {op_name} | {kinds.get(op_name, '?')} | {ms:.4f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="names of bench/skeletons/*.onnx")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--attention", help="comma list of R or RxCH to force in the attention kernel, e.g. 4,8x64")
    parser.add_argument("--gemm-targets", help="comma list of GEMM workgroup targets to force, e.g. 128,256,512")
    parser.add_argument("--max-splits", help="comma list of split-K limits to force, e.g. 1,16")
    args = parser.parse_args()
    graphs = model_set([str(ROOT / "bench" / "skeletons" / f"{m}.onnx") for m in args.models])
    backend = VulkanBackend(LoadOptions.make({"timestamps": True}))
    print(backend.device_name)
    try:
        for name, graph in graphs.items():
            report(name, graph, backend, args.top)
            if args.attention:
                sweep(name, graph, backend, "attention", attention_settings(args.attention.split(",")))
            if args.gemm_targets:
                sweep(name, graph, backend, "gemm_targets", gemm_settings(args.gemm_targets.split(",")))
            if args.max_splits:
                sweep(name, graph, backend, "max_splits", split_settings(args.max_splits.split(",")))
    finally:
        backend.close()


if __name__ == "__main__":
    main()
