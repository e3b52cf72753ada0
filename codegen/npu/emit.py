"""NPU code generation: which ops the XDNA NPU takes, and one partition as xclbin references plus bf16 weights.

The artifact (format "xclbin-ref-v1") holds no binary: `<pid>.npu.json` lists the kernel invocations in order
(xclbin, instruction file and kernel name to call, argument layout, padded sizes, host-side reshapes) and
`<pid>.npu.weights.bin` holds every constant operand already transposed, padded and rounded to bf16
(little-endian uint16, each entry 64-byte aligned). See codegen/npu_catalog.py for the kernels.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from codegen.artifact import Artifact
from codegen.errors import NpuCodegenError
from codegen.npu.catalog import device_name
from codegen.npu.lower import LOWERINGS, ProgramBuilder
from ragc import ir

FORMAT = "xclbin-ref-v1"
ALIGN = 64


def unsupported_reason(graph: ir.Graph, op: ir.Op) -> str | None:
    """Why `op` cannot run on the NPU (one line naming the op and what to do), or None when it can."""
    if op.op_type not in LOWERINGS:
        return f"{op.op_type} has no NPU kernel (the NPU takes {', '.join(sorted(LOWERINGS))}); run it elsewhere"
    for t in graph.input_tensors(op) + graph.output_tensors(op):
        if t is not None and t.dtype != "float32":
            return f"{t.name} is {t.dtype}: NPU kernels take float32 tensors (computed in bf16)"
    return LOWERINGS[op.op_type][0](graph, op)


def emit(sub: ir.Graph, partition_id: str, target_npu: dict[str, Any] | None = None) -> Artifact:
    """One NPU partition as an "xclbin-ref-v1" artifact; `target_npu` (the target's npu section) goes into meta
    as `npu` so the simulator can time it without ragc."""
    builder = ProgramBuilder(device=device_name(str((target_npu or {}).get("arch", "xdna2"))))
    for op in sub.ops:
        _lower(builder, sub, op)
    program_name, weights_name = f"{partition_id}.npu.json", f"{partition_id}.npu.weights.bin"
    blob, entries = pack_weights(builder.weights)
    program = {
        "format": FORMAT,
        "device": builder.device,
        "inputs": [_signature(sub.tensors[n]) for n in sub.inputs],
        "outputs": [_signature(sub.tensors[n]) for n in sub.outputs],
        "steps": builder.steps,
        "weights": {"file": weights_name, "entries": entries},
    }
    text = json.dumps(program, sort_keys=True, indent=1, allow_nan=False) + "\n"
    meta: dict[str, Any] = {"program": program_name, "weights": weights_name, "device": builder.device}
    if target_npu is not None:
        meta["npu"] = json.loads(json.dumps(target_npu, sort_keys=True))
    return Artifact(format=FORMAT, files={program_name: text.encode(), weights_name: blob}, meta=meta)


def kernel_calls(graph: ir.Graph, op: ir.Op, arch: str = "xdna2") -> list[tuple[str, tuple[int, ...]]]:
    """The NPU kernel invocations `op` lowers to, as (kernel kind, padded dims) pairs: what the cost model times
    with runtime_min.xdna.XdnaTiming.kernel_ms(kind, *dims). Raises NpuCodegenError if the NPU cannot run it."""
    builder = ProgramBuilder(device=device_name(arch), keep_weights=False)
    _lower(builder, graph, op)
    return [(s["kernel"]["kernel"], tuple(s["kernel"]["dims"].values())) for s in builder.steps]


def pack_weights(weights: dict[str, np.ndarray]) -> tuple[bytes, dict[str, dict[str, Any]]]:
    """Concatenate fp32 arrays as bf16 (round to nearest even), each at a 64-byte aligned offset."""
    chunks: list[bytes] = []
    entries: dict[str, dict[str, Any]] = {}
    offset = 0
    for key, array in weights.items():
        data = bf16_bits(array).astype("<u2").tobytes()
        entries[key] = {"offset": offset, "shape": list(array.shape), "dtype": "bfloat16"}
        padding = -len(data) % ALIGN
        chunks.append(data + b"\0" * padding)
        offset += len(data) + padding
    return b"".join(chunks), entries


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bit patterns, round to nearest even (NaN kept quiet); runtime_min/xdna.py reads them back."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    half = np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    return np.where(np.isnan(x), np.uint16(0x7FC0), ((bits + half) >> np.uint32(16)).astype(np.uint16))


def _lower(builder: ProgramBuilder, graph: ir.Graph, op: ir.Op) -> None:
    reason = unsupported_reason(graph, op)
    if reason is not None:
        raise NpuCodegenError(f"op {op.name} ({op.op_type}) cannot run on the NPU: {reason}")
    LOWERINGS[op.op_type][1](builder, graph, op)


def _signature(t: ir.Tensor) -> dict[str, Any]:
    return {"name": t.name, "dtype": t.dtype, "shape": list(t.shape)}
