"""What each op costs on the NPU inside a partition, for placement: the XDNA model's time of the steps it lowers
to (codegen.npu.plan_ops: the same lowering, epilogue fusion and tiling choice the emitter uses), one run-list
command per step, and a context switch plus the run list's host sync where the op enters another xclbin than the
NPU step before it in graph order (the emitter's segments follow the same order).
The partition's own launch (one host sync) is paid where a tensor enters the NPU (the pipeline's transfer cost);
ops fused into a GEMM epilogue cost nothing of their own; ops the NPU cannot run cost inf."""

from __future__ import annotations

import math

from ragc.costmodel.npu import XdnaTiming
from ragc.ir import Graph


def npu_op_ms(graph: Graph, timing: XdnaTiming) -> dict[str, float]:
    """Op name -> ms on the NPU (see the module docstring)."""
    import codegen.npu

    steps = codegen.npu.plan_ops(graph, timing)
    loaded: str | None = None  # the xclbin of the last NPU kernel step in graph order
    times: dict[str, float] = {}
    for op in graph.ops:
        calls = [s for s in steps[op.name] if "kernel" in s]
        if not steps[op.name] and codegen.npu.unsupported_reason(graph, op) is not None:
            times[op.name] = math.inf
            continue
        ms = 0.0
        for step in calls:
            ms += step["simulated_ms"] + timing.launch_costs.runlist_entry_ms
            if loaded is not None and step["kernel"]["xclbin"] != loaded:
                ms += timing.switch_ms()
            loaded = step["kernel"]["xclbin"]
        times[op.name] = ms
    return times


def npu_absorbed(graph: Graph) -> set[str]:
    """Ops the NPU runs inside a GEMM's epilogue."""
    from codegen.npu.fuse import epilogues

    return {name for chain in epilogues(graph).values() for name in chain}
