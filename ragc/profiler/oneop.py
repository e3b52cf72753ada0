"""ir.Graphs as onnxruntime CPU sessions (the session options runtime_min's CPU backend uses), their timed runs,
and the attribution of onnxruntime's per-node profile to ir ops."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from codegen.cpu_kernels import named_op
from ragc.costmodel.cpu_fusion import cpu_kernel_of
from ragc.ir import Graph

MAX_REPEATS = 1000


def session_options() -> ort.SessionOptions:
    """Sequential execution, default intra-op threads, all graph optimizations: as runtime_min runs CPU partitions."""
    opts = ort.SessionOptions()
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.force_spinning_stop", "1")
    return opts


def random_feeds(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs for timing: uniform floats, zero integers (valid indices), False booleans."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name in graph.inputs:
        t = graph.tensors[name]
        dtype = np.dtype(t.dtype)
        if dtype.kind == "f":
            feeds[name] = rng.uniform(-1.0, 1.0, t.shape).astype(dtype)
        else:
            feeds[name] = np.zeros(t.shape, dtype)
    return feeds


def make_session(model: onnx.ModelProto, trace_dir: str | None = None) -> ort.InferenceSession:
    """A CPU session; with `trace_dir`, onnxruntime's per-node profiler writes there."""
    opts = session_options()
    if trace_dir is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(trace_dir) / "ort")
        opts.optimized_model_filepath = str(Path(trace_dir) / "optimized.onnx")
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def timed_runs(
    session: ort.InferenceSession,
    feeds: dict[str, np.ndarray],
    budget_s: float,
    min_runs: int = 3,
    max_runs: int = MAX_REPEATS,
) -> list[float]:
    """Wall ms of `session.run`, after 2 warm-up runs, repeated for about `budget_s` (min_runs to max_runs)."""
    start = time.perf_counter()
    session.run(None, feeds)
    session.run(None, feeds)
    first = (time.perf_counter() - start) / 2
    repeats = max(min_runs, min(max_runs, int(budget_s / max(first, 1e-6))))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        session.run(None, feeds)
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return times


def _layout_owners(optimized: onnx.GraphProto) -> dict[str, str]:
    """Layout reorder node -> the node that needs it: the consumer of a ReorderOutput (an op without a blocked
    layout), the producer feeding a ReorderInput."""
    producers = {o: n.name for n in optimized.node for o in n.output}
    consumers: dict[str, str] = {}
    for n in optimized.node:
        for i in n.input:
            consumers.setdefault(i, n.name)
    owners = {}
    for n in optimized.node:
        if n.op_type == "ReorderOutput" and n.output[0] in consumers:
            owners[n.name] = consumers[n.output[0]]
        elif n.op_type == "ReorderInput" and n.input[0] in producers:
            owners[n.name] = producers[n.input[0]]
    return owners


def source_ops(
    graph: Graph, optimized: onnx.GraphProto | None = None, kernel_of: dict[str, str] | None = None
) -> Callable[[str], str | None]:
    """Maps an onnxruntime node name to the ir op whose sample its time is (codegen.cpu_kernels: the op a fused
    kernel is named after, or the op writing its output; a node of `optimized` that names no op, such as the
    FastGelu "GPT2Gelu", by the tensor it writes). None for nodes onnxruntime inserts itself (layout reorders,
    reshapes around a gemm)."""
    ops, producers = {op.name: op for op in graph.ops}, graph.producers()
    kernel_of = cpu_kernel_of(graph) if kernel_of is None else kernel_of
    writes = {
        n.name: next((producers[o] for o in n.output if o in producers), None)
        for n in (optimized.node if optimized is not None else [])
        if not n.op_type.startswith("Reorder")
    }

    def source(node: str) -> str | None:
        op = named_op(ops, producers, node) or writes.get(node)
        return (kernel_of.get(op.name) or op.name) if op is not None else None

    return source


def attribute_nodes(
    graph: Graph,
    timed: tuple[dict[str, float], onnx.GraphProto],
    node_bias_ms: float = 0.0,
    layouts: bool = False,
    kernel_of: dict[str, str] | None = None,
) -> dict[str, float]:
    """Op name -> ms from onnxruntime's node times and optimized graph (see source_ops); `node_bias_ms` (the
    profiler's own cost per node) is taken out. With `layouts`, a layout reorder counts for the op that needs it
    (see _layout_owners); without, reorders count for nothing (a lone op's reorders vanish inside a partition of
    blocked-layout ops)."""
    times, optimized = timed
    source = source_ops(graph, optimized, kernel_of)
    owners = _layout_owners(optimized) if layouts else {}
    per_op: dict[str, float] = {}
    for node, ms in times.items():
        op = source(owners.get(node, node))
        if op is not None:
            per_op[op] = per_op.get(op, 0.0) + max(0.0, ms - node_bias_ms)
    return per_op
