"""Placement solvers on synthetic resnet50-like (~120 units) and BERT-base-like (~500 units) problems.

    python bench/placement.py [--time-limit 5] [--models resnet50,bert]

Costs follow a Ryzen-AI-like chip (CPU ~0.2 TFLOP/s, iGPU ~4 TFLOP/s, NPU ~10 TOP/s for conv/matmul only, one
unified memory bus): per unit a dispatch overhead plus FLOPs over throughput, memory traffic over bandwidth.
Prints, per solver: predicted latency, solve time and optimality gap; then the throughput (pipeline) plan.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ragc.placement import Edge, PlacementProblem, Unit, solve  # noqa: E402

DEVICES = ("cpu", "gpu", "npu")
GFLOPS = {"cpu": 200.0, "gpu": 4000.0, "npu": 10000.0}  # sustained GFLOP/s on dense conv/matmul
GBPS = {"cpu": 40.0, "gpu": 90.0, "npu": 60.0}  # GB/s for memory-bound work
DISPATCH_MS = {"cpu": 0.005, "gpu": 0.02, "npu": 0.04}
NPU_KINDS = frozenset({"conv", "matmul", "eltwise"})
LINK_LATENCY_MS, LINK_GBPS = 0.03, 25.0


def transfer_ms(src: str, dst: str, nbytes: int) -> float:
    return 0.0 if src == dst else LINK_LATENCY_MS + nbytes / (LINK_GBPS * 1e6)


class _Builder:
    """Adds units in topological order; each unit names the units it reads from."""

    def __init__(self) -> None:
        self.units: list[Unit] = []
        self.edges: list[Edge] = []
        self.bytes_of: dict[str, int] = {}

    def add(self, name: str, kind: str, flops: float, out_bytes: int, reads: list[str], weight_bytes: int = 0) -> str:
        moved = out_bytes * (1 + len(reads)) + weight_bytes
        costs = {}
        for d in DEVICES:
            if d == "npu" and kind not in NPU_KINDS:
                costs[d] = math.inf
                continue
            compute = flops / (GFLOPS[d] * 1e6) if kind in ("conv", "matmul") else 0.0
            costs[d] = DISPATCH_MS[d] + max(compute, moved / (GBPS[d] * 1e6))
        self.units.append(
            Unit(
                name,
                [name],
                costs,
                mem_bytes=weight_bytes + out_bytes,
                host_in_bytes=out_bytes if not reads and not self.units else 0,
            )
        )
        self.edges += [Edge(src, name, self.bytes_of[src]) for src in reads]
        self.bytes_of[name] = out_bytes
        return name

    def problem(self) -> PlacementProblem:
        self.units[-1].host_out_bytes = self.bytes_of[self.units[-1].name]
        return PlacementProblem(self.units, self.edges, list(DEVICES), transfer_ms)


def resnet50_like() -> PlacementProblem:
    """Stem, 16 bottleneck blocks (conv, relu, conv, relu, conv, add, relu; a projection conv on the skip of each
    stage's first block), global pool and fc: 121 units, a chain with skip connections."""
    b = _Builder()
    x = b.add("stem", "conv", 2 * 112 * 112 * 64 * 3 * 49, 4 * 64 * 112 * 112, [])
    x = b.add("stem_relu", "relu", 0, 4 * 64 * 112 * 112, [x])
    x = b.add("pool", "pool", 0, 4 * 64 * 56 * 56, [x])
    channels = 64
    for stage, (width, blocks, size) in enumerate([(64, 3, 56), (128, 4, 28), (256, 6, 14), (512, 3, 7)]):
        for k in range(blocks):
            p = f"s{stage}b{k}"
            out = 4 * width
            act = 4 * size * size
            y = b.add(f"{p}_c1", "conv", 2 * size * size * width * channels, act * width, [x], 4 * width * channels)
            y = b.add(f"{p}_r1", "relu", 0, act * width, [y])
            y = b.add(f"{p}_c2", "conv", 2 * size * size * width * width * 9, act * width, [y], 36 * width * width)
            y = b.add(f"{p}_r2", "relu", 0, act * width, [y])
            y = b.add(f"{p}_c3", "conv", 2 * size * size * out * width, act * out, [y], 4 * out * width)
            skip = x
            if k == 0:
                skip = b.add(f"{p}_proj", "conv", 2 * size * size * out * channels, act * out, [x], 4 * out * channels)
            y = b.add(f"{p}_add", "eltwise", 0, act * out, [y, skip])
            x = b.add(f"{p}_relu", "relu", 0, act * out, [y])
            channels = out
    x = b.add("gap", "pool", 0, 4 * 2048, [x])
    b.add("fc", "matmul", 2 * 2048 * 1000, 4 * 1000, [x], 4 * 2048 * 1000)
    return b.problem()


def bert_base_like(layers: int = 12, seq: int = 128, hidden: int = 768) -> PlacementProblem:
    """Embeddings and 12 encoder layers of unfused ops (Q, K and V branches side by side): 516 units."""
    b = _Builder()
    act, heads = 4 * seq * hidden, 12
    scores = 4 * heads * seq * seq
    x = b.add("embed", "gather", 0, act, [])
    x = b.add("embed_pos", "eltwise", 0, act, [x])
    x = _layer_norm(b, "embed_ln", x, act)
    for k in range(layers):
        p = f"l{k}"
        branches = []
        for name in ("q", "k", "v"):
            y = b.add(f"{p}_{name}", "matmul", 2 * seq * hidden * hidden, act, [x], 4 * hidden * hidden)
            y = b.add(f"{p}_{name}_bias", "eltwise", 0, act, [y])
            branches.append(b.add(f"{p}_{name}_heads", "transpose", 0, act, [y]))
        q, kk, v = branches
        s = b.add(f"{p}_qk", "matmul", 2 * seq * seq * hidden, scores, [q, kk])
        s = b.add(f"{p}_scale", "eltwise", 0, scores, [s])
        s = b.add(f"{p}_mask", "eltwise", 0, scores, [s])
        s = b.add(f"{p}_softmax", "softmax", 0, scores, [s])
        y = b.add(f"{p}_av", "matmul", 2 * seq * seq * hidden, act, [s, v])
        y = b.add(f"{p}_merge", "transpose", 0, act, [y])
        y = b.add(f"{p}_out", "matmul", 2 * seq * hidden * hidden, act, [y], 4 * hidden * hidden)
        y = b.add(f"{p}_out_bias", "eltwise", 0, act, [y])
        y = b.add(f"{p}_res1", "eltwise", 0, act, [y, x])
        x = _layer_norm(b, f"{p}_ln1", y, act)
        y = b.add(f"{p}_ffn1", "matmul", 8 * seq * hidden * hidden, 4 * act, [x], 16 * hidden * hidden)
        y = b.add(f"{p}_ffn1_bias", "eltwise", 0, 4 * act, [y])
        g = b.add(f"{p}_gelu_div", "eltwise", 0, 4 * act, [y])
        g = b.add(f"{p}_gelu_erf", "erf", 0, 4 * act, [g])
        g = b.add(f"{p}_gelu_add", "eltwise", 0, 4 * act, [g])
        g = b.add(f"{p}_gelu_mul", "eltwise", 0, 4 * act, [g, y])
        g = b.add(f"{p}_gelu_half", "eltwise", 0, 4 * act, [g])
        y = b.add(f"{p}_ffn2", "matmul", 8 * seq * hidden * hidden, act, [g], 16 * hidden * hidden)
        y = b.add(f"{p}_ffn2_bias", "eltwise", 0, act, [y])
        y = b.add(f"{p}_res2", "eltwise", 0, act, [y, x])
        x = _layer_norm(b, f"{p}_ln2", y, act)
    b.add("pooler", "matmul", 2 * hidden * hidden, 4 * hidden, [x], 4 * hidden * hidden)
    return b.problem()


def _layer_norm(b: _Builder, p: str, x: str, act: int) -> str:
    """LayerNormalization as exported unfused: mean, sub, pow, mean, add eps and sqrt, div, scale and shift."""
    mean = b.add(f"{p}_mean", "reduce", 0, act // 768, [x])
    centred = b.add(f"{p}_sub", "eltwise", 0, act, [x, mean])
    sq = b.add(f"{p}_pow", "pow", 0, act, [centred])
    var = b.add(f"{p}_var", "reduce", 0, act // 768, [sq])
    std = b.add(f"{p}_std", "sqrt", 0, act // 768, [var])
    y = b.add(f"{p}_div", "eltwise", 0, act, [centred, std])
    return b.add(f"{p}_affine", "eltwise", 0, act, [y])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-limit", type=float, default=5.0)
    parser.add_argument("--models", default="resnet50,bert")
    args = parser.parse_args()
    makers = {"resnet50": resnet50_like, "bert": bert_base_like}
    print("| problem | units | edges | solver | predicted ms | solve s | gap |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        problem = makers[name]()
        for solver in ("single", "greedy", "heft", "ilp", "auto"):
            started = time.perf_counter()
            plan = solve(problem, solver=solver, time_limit_s=args.time_limit)
            seconds = time.perf_counter() - started
            _row(name, problem, f"{solver} -> {plan.solver}", plan.predicted_ms, seconds, plan.gap)
        started = time.perf_counter()
        plan = solve(problem, objective="throughput")
        stages = " / ".join(f"{plan.assignment[s[0]]}:{len(s)}" for s in plan.stages or [])
        _row(name, problem, f"throughput [{stages}]", plan.predicted_ms, time.perf_counter() - started, plan.gap)


def _row(name: str, problem: PlacementProblem, label: str, ms: float, seconds: float, gap: float | None) -> None:
    gap_text = "-" if gap is None else f"{100 * gap:.3f}%"
    print(
        f"| {name} | {len(problem.units)} | {len(problem.edges)} | {label} | {ms:.3f} | {seconds:.2f} | {gap_text} |",
        flush=True,
    )


if __name__ == "__main__":
    main()
