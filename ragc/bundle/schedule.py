"""The static schedule: per processor an ordered step list with explicit waits, and every crossing tensor."""

from __future__ import annotations

from typing import Any

from ragc import ir
from ragc.partition import Partition
from runtime_min.format import FORMAT_VERSION, PROCESSORS


def tensor_spec(tensor: ir.Tensor) -> dict[str, Any]:
    return {"name": tensor.name, "dtype": tensor.dtype, "shape": list(tensor.shape)}


def build_schedule(
    graph: ir.Graph,
    partitions: list[Partition],
    artifacts: dict[str, dict[str, Any]],
    fallbacks: dict[str, dict[str, Any]],
    predicted_ms: dict[str, float],
    objective: str = "latency",
    constants: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`artifacts`/`fallbacks` map partition id -> the artifact entry; `predicted_ms` partition id -> time;
    `constants` the plan outputs that are constants (name -> their tensor-store entry)."""
    writer = {name: p for p in partitions for name in p.graph.outputs}
    processors = [d for d in PROCESSORS if any(p.device == d for p in partitions)]
    entries, transfers = [], []
    steps: dict[str, list[dict[str, Any]]] = {d: [] for d in processors}
    for p in partitions:
        entry: dict[str, Any] = {
            "id": p.id,
            "device": p.device,
            "ops": p.ops,
            "inputs": [tensor_spec(graph.tensors[n]) for n in p.graph.inputs],
            "outputs": [tensor_spec(graph.tensors[n]) for n in p.graph.outputs],
            "artifact": artifacts[p.id],
            "predicted_ms": predicted_ms.get(p.id),
        }
        if p.id in fallbacks:
            entry["fallback"] = fallbacks[p.id]
        if in_place := {i: o for i, o in p.graph.in_place_updates().items() if o in p.graph.outputs}:
            entry["in_place"] = in_place
        entries.append(entry)
        sources = sorted({writer[n].id for n in p.graph.inputs if n in writer})
        steps[p.device].append({"partition": p.id, "waits": [s for s in sources if _device(partitions, s) != p.device]})
        for name in p.graph.inputs:
            src = writer.get(name)
            src_device = src.device if src else "cpu"  # graph inputs arrive in host memory
            if src_device != p.device:
                transfers.append(
                    {
                        "tensor": name,
                        "from": src.id if src else "input",
                        "to": p.id,
                        "src_device": src_device,
                        "dst_device": p.device,
                        "bytes": graph.tensors[name].nbytes,
                    }
                )
    return {
        "schedule_version": FORMAT_VERSION,
        "objective": objective,
        "processors": processors,
        "inputs": [tensor_spec(graph.tensors[n]) for n in graph.inputs],
        "outputs": [tensor_spec(graph.tensors[n]) for n in graph.outputs],
        "partitions": entries,
        "steps": steps,
        "transfers": transfers,
        "constants": constants or {},
    }


def _device(partitions: list[Partition], pid: str) -> str:
    return next(p.device for p in partitions if p.id == pid)
