"""Which processor can run which op: each device's capability predicate, from its code generator."""

from __future__ import annotations

import importlib

from ragc import ir

DEVICES = ("cpu", "gpu", "npu")
_GENERATORS = {"gpu": "codegen.gpu", "npu": "codegen.npu"}


def unsupported_reason(graph: ir.Graph, op: ir.Op, device: str) -> str | None:
    """None when `device` can run `op` (the CPU runs every standard op through onnxruntime)."""
    if device == "cpu":
        return None
    return generator(device).unsupported_reason(graph, op)


def generator(device: str):
    """The codegen module of a non-CPU device (`emit`, `unsupported_reason`)."""
    return importlib.import_module(_GENERATORS[device])
