"""The glue between partitions, measured from real multi-partition plans run by runtime_min (not from single ops).

A chain of BLOCKS identical conv+relu blocks is compiled for PATTERNS of processors (all CPU, all GPU, one GPU
island, alternating...) at two tensor sizes, each plan timed warm in runtime_min (interleaved rounds, the machine's
usual state). Every plan's wall time is then

    wall = n_cpu * block_cpu + n_gpu * block_gpu + cpu_runs * launch_cpu + gpu_islands * island(bytes) + fixed

with island(bytes) = island_latency + 2 * bytes / bandwidth: the hand-off into the GPU and back, the GPU launch
(submit and fence) and the wake-up of the worker that waits, all together, since every GPU island has exactly one
entry and one exit. The bandwidth is the copy benchmark's (the personality's `transfers`): two tensor sizes cannot
tell it from the GPU blocks' own time, and a free fit put the H200's at 2.0 GB/s against 22.2 measured, pricing a
GPU-first resnet18's 0.6 MB input at 0.3 ms (2026-12-04). The non-negative least-squares fit of the other terms (in
relative error, so short plans count as much as long ones) goes into the personality's `glue`, which
`Personality.dispatch_ms` and `transfer_ms` (what the placement solvers price boundaries with) read first.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from scipy.optimize import nnls

BLOCKS = 6
PATTERNS = ("cccccc", "gggggg", "gggggc", "cggggg", "cccggg", "gggccc", "cgcgcg", "gcgcgc", "ccggcc")
SIZES = ((16, 24), (32, 48))  # (channels, height = width) of the tensor crossing each boundary
ROUNDS = 3


def chain_model(channels: int, hw: int) -> onnx.ModelProto:
    """BLOCKS x (3x3 conv + relu) at a fixed tensor size, random weights from a fixed seed."""
    rng = np.random.default_rng(7)
    nodes, inits, x = [], [], "x"
    for b in range(BLOCKS):
        w = numpy_helper.from_array((rng.standard_normal((channels, channels, 3, 3)) * 0.1).astype(np.float32), f"w{b}")
        inits.append(w)
        nodes.append(helper.make_node("Conv", [x, f"w{b}"], [f"c{b}"], name=f"conv{b}", pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{b}"], [f"r{b}"], name=f"relu{b}"))
        x = f"r{b}"
    shape = [1, channels, hw, hw]
    graph = helper.make_graph(
        nodes,
        "glue",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def features(pattern: str) -> tuple[int, int, int, int]:
    """(CPU blocks, GPU blocks, CPU runs, GPU islands) of a pattern."""
    runs = [ch for i, ch in enumerate(pattern) if i == 0 or pattern[i - 1] != ch]
    return pattern.count("c"), pattern.count("g"), runs.count("c"), runs.count("g")


def plans(personality: Any, folder: Path) -> list[tuple[str, int, int, Path]]:
    """(pattern, size index, crossing bytes, bundle) for every pattern at every size."""
    from ragc.compilation import placed_bundle
    from ragc.frontend import load_model
    from ragc.placement import build_problem, simulate

    out = []
    for s, (channels, hw) in enumerate(SIZES):
        path = folder / f"chain{s}.onnx"
        onnx.save(chain_model(channels, hw), str(path))
        loaded = load_model(path)
        problem = build_problem(loaded.graph, ["cpu", "gpu"], lambda g, op, d: 1.0, lambda a, b, n: 0.0)
        for pattern in PATTERNS:
            device = {f"conv{b}": "cpu" if ch == "c" else "gpu" for b, ch in enumerate(pattern)}
            assignment = {u.name: device[u.ops[0]] for u in problem.units}
            order = {d: [u.name for u in problem.units if assignment[u.name] == d] for d in problem.devices}
            placed = simulate(problem, assignment, order)
            bundle = placed_bundle(path, loaded, personality, problem, placed, folder / f"{pattern}-{s}")
            out.append((pattern, s, 4 * channels * hw * hw, bundle))
    return out


def fit(rows: list[tuple[str, int, int, float]], gbps: float) -> dict[str, Any]:
    """The glue terms from (pattern, size index, bytes, wall ms) rows and the copies' measured GB/s, with the fit's
    residuals."""
    columns = 2 * len(SIZES) + 3  # block cpu/gpu per size, cpu launch, island latency, fixed
    a, b = np.zeros((len(rows), columns)), np.array([r[3] for r in rows])
    copies = np.zeros(len(rows))
    for i, (pattern, s, nbytes, _) in enumerate(rows):
        n_cpu, n_gpu, cpu_runs, islands = features(pattern)
        a[i, 2 * s], a[i, 2 * s + 1] = n_cpu, n_gpu
        a[i, -3], a[i, -2], a[i, -1] = cpu_runs, islands, 1.0
        copies[i] = islands * 2 * nbytes / (gbps * 1e6)
    x, _ = nnls(a / b[:, None], 1.0 - copies / b)  # relative errors: the short plans weigh as much as the long
    residual = (a @ x + copies - b) / b
    return {
        "launch_ms": {"cpu": round(float(x[-3]), 6), "gpu": 0.0},
        "handoff": {
            pair: {"latency_ms": round(float(x[-2]) / 2, 6), "gbps": round(gbps, 3)}
            for pair in ("cpu->gpu", "gpu->cpu")
        },
        "fixed_ms": round(float(x[-1]), 6),
        "fit": {"plans": len(rows), "max_error_pct": round(float(np.abs(residual).max()) * 100, 2)},
    }


def measure_glue(personality: Any, budget_s: float, gate: Any, bar: Any = None, task: Any = None) -> dict[str, Any]:
    """The `glue` section of a personality with a GPU: every designed plan built, timed and fitted."""
    import runtime_min
    from ragc.profiler.progress import bar_advance
    from ragc.profiler.steady import time_interleaved
    from ragc.profiler.tune import PlanTimer

    with tempfile.TemporaryDirectory(prefix="ragc-glue-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        built = plans(personality, Path(tmp))
        timers = []
        try:
            for pattern, s, _, bundle in built:
                plan = runtime_min.load(bundle)
                feeds = {i.name: np.random.default_rng(0).random(i.shape).astype(i.dtype) for i in plan.inputs}
                timers.append(PlanTimer(plan, feeds, False, f"{pattern}/{s}"))
            if bar is not None:
                bar.update(task, description="glue", total=len(timers) * ROUNDS, completed=0)
            advance = bar_advance(bar, task) if bar is not None else None
            time_interleaved(timers, budget_s / len(timers), ROUNDS, advance, gate)
        finally:
            for timer in timers:
                timer.plan.close()
    rows = [(p, s, n, t.estimate()[0]) for (p, s, n, _), t in zip(built, timers, strict=True)]
    return fit(rows, float(personality.data["transfers"]["cpu->gpu"]["gbps"])) | {
        "plans": [{"pattern": p, "size": s, "ms": round(ms, 6)} for p, s, _, ms in rows]
    }
