"""NPU code generation: which ops the XDNA NPU takes, and one partition as xclbin references plus packed weights.

The artifact (format "xclbin-ref-v2") holds no binary: `<pid>.npu.json` lists the steps in order (kernel calls:
xclbin, instruction file and kernel name, argument layout, padded sizes, host-side reshapes, epilogue; alias
steps: renames), the segments (consecutive calls sharing an xclbin, one run list each) and what the compiler's
XDNA model says each call and launch costs; every constant operand, laid out and padded (bf16 as little-endian
uint16 bits, int8 as is), goes into the bundle's tensor store, named by its offset there. See
codegen/npu/catalog.py for the kernels and codegen/npu/KERNELS.md for how to add one.
"""

from __future__ import annotations

from typing import Any

from codegen.artifact import Artifact, TensorStore
from codegen.errors import NpuCodegenError
from codegen.npu import ops_attention, ops_gemm, ops_vector  # noqa: F401 - importing registers the lowerings
from codegen.npu.catalog import device_name
from codegen.npu.fuse import epilogues
from codegen.npu.lower import LOWERINGS, ProgramBuilder
from ragc import ir
from runtime_min.format import ARTIFACT_FORMATS, dumps, to_bf16_bits

FORMAT = ARTIFACT_FORMATS["npu"]


def unsupported_reason(graph: ir.Graph, op: ir.Op) -> str | None:
    """Why `op` cannot run on the NPU (one line naming the op and what to do), or None when it can."""
    if op.op_type not in LOWERINGS:
        return f"{op.op_type} has no NPU kernel (the NPU takes {', '.join(sorted(LOWERINGS))}); run it elsewhere"
    return LOWERINGS[op.op_type][0](graph, op)


def plan(graph: ir.Graph, timing: Any, keep_weights: bool = True) -> ProgramBuilder:
    """Every op of `graph` lowered in order, elementwise chains fused into the GEMM before them; each kernel step
    carries its simulated time. Raises NpuCodegenError naming the first op the NPU cannot run."""
    fusion = epilogues(graph)
    fused = {name for chain in fusion.values() for name in chain}
    builder = ProgramBuilder(device=device_name(timing.arch), timing=timing, fusion=fusion, keep_weights=keep_weights)
    for op in graph.ops:
        if op.name in fused:
            continue
        reason = unsupported_reason(graph, op)
        if reason is not None:
            raise NpuCodegenError(f"op {op.name} ({op.op_type}) cannot run on the NPU: {reason}")
        LOWERINGS[op.op_type][1](builder, graph, op)
    for step in builder.steps:
        if "kernel" in step:
            step["simulated_ms"] = round(timing.kernel_ms(step["kernel"]), 9)
    return builder


def plan_ops(graph: ir.Graph, timing: Any) -> dict[str, list[dict[str, Any]]]:
    """The steps each op the NPU can run lowers to (weights not packed), as the cost model prices them; ops fused
    into a GEMM's epilogue have none of their own."""
    fusion = epilogues(graph)
    fused = {name for chain in fusion.values() for name in chain}
    builder = ProgramBuilder(device=device_name(timing.arch), timing=timing, fusion=fusion, keep_weights=False)
    out: dict[str, list[dict[str, Any]]] = {}
    for op in graph.ops:
        if op.name in fused or unsupported_reason(graph, op) is not None:
            out[op.name] = []
            continue
        first = len(builder.steps)
        LOWERINGS[op.op_type][1](builder, graph, op)
        out[op.name] = builder.steps[first:]
        for step in out[op.name]:
            if "kernel" in step:
                step["simulated_ms"] = timing.kernel_ms(step["kernel"])
    return out


def segments(steps: list[dict[str, Any]], timing: Any) -> list[dict[str, Any]]:
    """The partition's run lists: kernel steps (by index into `steps`) grouped by consecutive xclbin."""
    calls = [i for i, step in enumerate(steps) if "kernel" in step]
    out = timing.segments([steps[i]["kernel"]["xclbin"] for i in calls])
    for segment in out:
        segment["steps"] = calls[segment.pop("first") : segment.pop("last") + 1]
    return out


def emit(sub: ir.Graph, partition_id: str, timing: Any, store: TensorStore | None = None) -> Artifact:
    """One NPU partition as an "xclbin-ref-v2" artifact, its packed weights added to `store` (a new one when None).
    `timing` is the compiler's XDNA model (ragc.costmodel.npu.XdnaTiming): each step carries the simulated time
    it gives, each segment its launch costs, so the simulator replays the compiler's own model."""
    store = store if store is not None else TensorStore()
    builder = plan(sub, timing)
    program_name = f"{partition_id}.npu.json"
    entries = {}
    for key, (array, dtype) in builder.weights.items():
        data = to_bf16_bits(array).astype("<u2") if dtype == "bfloat16" else array.astype(dtype)
        entries[key] = {"offset": store.add(data), "shape": list(array.shape), "dtype": dtype}
    program = {
        "format": FORMAT,
        "device": builder.device,
        "inputs": [_signature(sub.tensors[n]) for n in sub.inputs],
        "outputs": [_signature(sub.tensors[n]) for n in sub.outputs],
        "steps": builder.steps,
        "segments": segments(builder.steps, timing),
        "weights": entries,
        "launch": timing.launch(),
    }
    meta: dict[str, Any] = {"program": program_name}
    return Artifact(format=FORMAT, files={program_name: dumps(program)}, meta=meta, store=store)


def _signature(t: ir.Tensor) -> dict[str, Any]:
    return {"name": t.name, "dtype": t.dtype, "shape": list(t.shape)}
