"""NPU code generation: which ops the XDNA NPU takes, and one partition as xclbin references plus bf16 weights.

The artifact (format "xclbin-ref-v2") holds no binary: `<pid>.npu.json` lists the kernel invocations in order
(xclbin, instruction file and kernel name to call, argument layout, padded sizes, host-side reshapes), and every
constant operand, already transposed, padded and rounded to bf16 (little-endian uint16), goes into the bundle's
tensor store, named by its offset there. See codegen/npu/catalog.py for the kernels.
"""

from __future__ import annotations

from typing import Any

from codegen.artifact import Artifact, TensorStore
from codegen.errors import NpuCodegenError
from codegen.npu.catalog import device_name
from codegen.npu.lower import LOWERINGS, ProgramBuilder
from ragc import ir
from runtime_min.format import ARTIFACT_FORMATS, dumps, to_bf16_bits

FORMAT = ARTIFACT_FORMATS["npu"]


def unsupported_reason(graph: ir.Graph, op: ir.Op) -> str | None:
    """Why `op` cannot run on the NPU (one line naming the op and what to do), or None when it can."""
    if op.op_type not in LOWERINGS:
        return f"{op.op_type} has no NPU kernel (the NPU takes {', '.join(sorted(LOWERINGS))}); run it elsewhere"
    for t in graph.input_tensors(op) + graph.output_tensors(op):
        if t is not None and t.dtype != "float32":
            return f"{t.name} is {t.dtype}: NPU kernels take float32 tensors (computed in bf16)"
    return LOWERINGS[op.op_type][0](graph, op)


def emit(sub: ir.Graph, partition_id: str, timing: Any, store: TensorStore | None = None) -> Artifact:
    """One NPU partition as an "xclbin-ref-v2" artifact, its packed bf16 weights added to `store` (a new one when
    None). `timing` is the compiler's XDNA model (ragc.costmodel.npu.XdnaTiming): each step carries the simulated
    time it gives, and the program the per-launch costs, so the simulator replays the compiler's own model."""
    store = store if store is not None else TensorStore()
    builder = ProgramBuilder(device=device_name(timing.arch))
    for op in sub.ops:
        _lower(builder, sub, op)
    for step in builder.steps:
        step["simulated_ms"] = round(timing.kernel_ms(step["kernel"]["kernel"], *step["kernel"]["dims"].values()), 9)
    program_name = f"{partition_id}.npu.json"
    entries = {
        key: {"offset": store.add(to_bf16_bits(array).astype("<u2")), "shape": list(array.shape), "dtype": "bfloat16"}
        for key, array in builder.weights.items()
    }
    program = {
        "format": FORMAT,
        "device": builder.device,
        "inputs": [_signature(sub.tensors[n]) for n in sub.inputs],
        "outputs": [_signature(sub.tensors[n]) for n in sub.outputs],
        "steps": builder.steps,
        "weights": entries,
        "launch": timing.launch(),
    }
    meta: dict[str, Any] = {"program": program_name}
    return Artifact(format=FORMAT, files={program_name: dumps(program)}, meta=meta, store=store)


def kernel_calls(graph: ir.Graph, op: ir.Op, arch: str = "xdna2") -> list[tuple[str, tuple[int, ...]]]:
    """The NPU kernel invocations `op` lowers to, as (kernel kind, padded dims) pairs: what the cost model times
    with ragc.costmodel.npu.XdnaTiming.kernel_ms(kind, *dims). Raises NpuCodegenError if the NPU cannot run it."""
    builder = ProgramBuilder(device=device_name(arch), keep_weights=False)
    _lower(builder, graph, op)
    return [(s["kernel"]["kernel"], tuple(s["kernel"]["dims"].values())) for s in builder.steps]


def _lower(builder: ProgramBuilder, graph: ir.Graph, op: ir.Op) -> None:
    reason = unsupported_reason(graph, op)
    if reason is not None:
        raise NpuCodegenError(f"op {op.name} ({op.op_type}) cannot run on the NPU: {reason}")
    LOWERINGS[op.op_type][1](builder, graph, op)


def _signature(t: ir.Tensor) -> dict[str, Any]:
    return {"name": t.name, "dtype": t.dtype, "shape": list(t.shape)}
