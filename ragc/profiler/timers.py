"""Block timers of whole ir.Graphs on the CPU (onnxruntime sessions), for steady.time_interleaved."""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

import onnx

from codegen.onnx_graph import graph_model
from ragc.ir import Graph
from ragc.profiler.oneop import attribute_nodes, make_session, random_feeds, timed_runs
from ragc.profiler.steady import BlockTimer, time_interleaved

WARMUP_RUNS = 2  # timed_runs' warm-up runs, which the profiler records too
TRACE_EVENTS_PER_BLOCK = 10_000  # onnxruntime's profiler stops recording after 1M events in all


class GraphTimer(BlockTimer):
    """One graph's onnxruntime session (and a profiled one, if asked), timed in blocks. Results come from the
    graph's *fastest counted block* (by its plain runs' median): that median is the wall time, and the per-node
    medians of the same block's profiled runs are the op times, so both saw the same machine state."""

    def __init__(self, graph: Graph, profiled: bool = False, label: str = ""):
        super().__init__(label)
        self.feeds = random_feeds(graph)
        self.session = make_session(graph_model(graph))
        self._trace_dir = tempfile.TemporaryDirectory() if profiled else None
        self.traced = make_session(graph_model(graph), self._trace_dir.name) if self._trace_dir else None
        self.block_medians: list[float] = []
        self.traced_blocks: list[int] = []  # runs of each profiled block, its warm-up runs included
        self._traced_runs = max(3, TRACE_EVENTS_PER_BLOCK // (len(graph.ops) + 2))  # node events + 2 per run

    def block(self, budget_s: float) -> None:
        """Time one block of about `budget_s` (shared with the profiled session when there is one)."""
        share = budget_s / (2 if self.traced else 1)
        self.block_medians.append(statistics.median(timed_runs(self.session, self.feeds, share)))
        if self.traced is not None:
            runs = timed_runs(self.traced, self.feeds, share, max_runs=self._traced_runs)
            self.traced_blocks.append(WARMUP_RUNS + len(runs))

    def walls(self) -> list[float]:
        return self.block_medians

    def _ranked(self) -> list[int]:
        """Indices of the counted blocks, fastest first."""
        return sorted(self.counted(range(len(self.block_medians))), key=lambda i: self.block_medians[i])

    def wall_ms(self) -> float:
        """Median ms of one run (launch overhead included) in the fastest counted block."""
        return self.block_medians[self._ranked()[0]]

    def node_ms(self) -> tuple[dict[str, float], onnx.GraphProto]:
        """Median ms of each node onnxruntime ran (its own node names, after its fusions) over the profiled runs of
        the fastest counted block (the next one where the profiler had stopped), and the optimized graph it ran.
        Ends the profiled session."""
        assert self.traced is not None and self._trace_dir is not None, "GraphTimer(profiled=True) times nodes"
        events = json.loads(Path(self.traced.end_profiling()).read_text())
        optimized = onnx.load(str(Path(self._trace_dir.name) / "optimized.onnx"), load_external_data=False).graph
        self._trace_dir.cleanup()
        runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")
        blocks, first = [], 0
        for count in self.traced_blocks:
            block = runs[first + WARMUP_RUNS : first + count]
            blocks.append(block if len(block) == count - WARMUP_RUNS else [])  # [] where the profiler stopped
            first += count
        recorded = [blocks[i] for i in self._ranked() if blocks[i]] or [b for b in blocks if b]
        lo, hi = recorded[0][0][0], recorded[0][-1][1]
        per_node: dict[str, list[float]] = {}
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and lo <= e["ts"] <= hi:
                per_node.setdefault(e["name"].removesuffix("_kernel_time"), []).append(e["dur"] / 1e3)
        return {name: statistics.median(ds) for name, ds in sorted(per_node.items())}, optimized


def op_ms(graph: Graph, budget_s: float, node_bias_ms: float = 0.0, layouts: bool = False) -> dict[str, float]:
    """In-context ms of each op of the graph, from one profiled session of the whole graph (see attribute_nodes)."""
    timer = GraphTimer(graph, profiled=True)
    time_interleaved([timer], 2 * budget_s, 1)
    return attribute_nodes(graph, timer.node_ms(), node_bias_ms, layouts)
