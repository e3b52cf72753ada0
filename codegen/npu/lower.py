"""The NPU lowering registry and the program builder every lowering appends steps to.

A lowering checks what it needs (`check(graph, op)` returns the reason an op cannot run, or None) and appends
steps to a `ProgramBuilder`: a kernel step names its kernel reference, how each runtime tensor is reshaped on the
host before it is padded into a data buffer (`transforms`, applied in order), which buffers come from the packed
weights, and how the padded result is cut and reshaped back; an alias step renames a tensor (Reshape and other
metadata ops, no kernel). Constants are laid out here, once. The op families live in ops_gemm, ops_vector and
ops_attention; see codegen/npu/KERNELS.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from codegen.npu.catalog import Buffer, KernelSpec
from ragc import ir


@dataclass
class Operand:
    """One kernel input: a runtime tensor reshaped by `transforms` on the host, or constant data (already laid out)."""

    shape: tuple[int, ...]  # logical shape after the transforms, before padding
    tensor: str | None = None
    transforms: list[dict[str, Any]] = field(default_factory=list)
    data: np.ndarray | None = None


@dataclass
class ProgramBuilder:
    """Collects the steps of one partition and the padded weights they read.

    `timing` is the compiler's XDNA model (it picks GEMM tilings), `fusion` the epilogue plan of the graph
    (codegen.npu.fuse.epilogues): a GEMM lowering takes its chain's ops into its epilogue."""

    device: str
    timing: Any
    fusion: dict[str, list[str]] = field(default_factory=dict)
    keep_weights: bool = True  # False: plan the steps only (the cost model's view), skip packing constants
    steps: list[dict[str, Any]] = field(default_factory=list)
    tiling: Any = None  # the GEMM tiling of the last GEMM step (kept by the next unless a switch pays)
    weights: dict[str, tuple[np.ndarray, str]] = field(default_factory=dict)  # key -> (padded values, dtype)

    def add_step(
        self,
        op: ir.Op,
        spec: KernelSpec,
        padded: tuple[int, ...],
        buffers: list[Buffer],
        operands: list[Operand],
        output: dict[str, Any],
        lowering: str,
        variant: str,
        mode: str = "",
        extra: dict[str, Any] | None = None,
    ) -> None:
        """One kernel call: `buffers` are its data arguments, inputs (aligned with `operands`) then the output."""
        ref = spec.reference(self.device, padded, buffers, variant, mode, extra)
        if spec.family != "gemm":
            self.tiling = None  # another design is loaded now: the next GEMM switches whatever its tiling
        entries = []
        for operand, buf in zip(operands, buffers, strict=False):
            entry: dict[str, Any] = {"role": buf.role}
            if operand.data is not None:
                key = f"{op.name}.{buf.role}"
                if self.keep_weights:
                    self.weights[key] = (pad(operand.data, buf.shape, spec.pad_value), buf.dtype)
                entry["weight"] = key
            else:
                entry.update(tensor=operand.tensor, transforms=operand.transforms, shape=list(operand.shape))
            entries.append(entry)
        out = buffers[len(operands)]
        step = {
            "op": op.name,
            "op_type": op.op_type,
            "lowering": lowering,
            "kernel": ref,
            "inputs": entries,
            "output": {"role": out.role, **output},
        }
        if self.fusion.get(op.name):
            step["fused"] = list(self.fusion[op.name])
        self.steps.append(step)

    def add_alias(self, op: ir.Op, source: str, tensor: str, shape: tuple[int, ...]) -> None:
        """`tensor` is `source` with another shape: no kernel, no copy."""
        self.steps.append(
            {"op": op.name, "op_type": op.op_type, "alias": {"source": source, "tensor": tensor, "shape": list(shape)}}
        )


def pad(data: np.ndarray, shape: tuple[int, ...], pad_value: str) -> np.ndarray:
    """`data` in the top-left corner of an array of `shape` filled with the kernel's pad value."""
    out = np.full(shape, float(pad_value), dtype=np.float32 if data.dtype.kind == "f" else data.dtype)
    out[tuple(slice(0, s) for s in data.shape)] = data
    return out


def tensor(graph: ir.Graph, name: str) -> ir.Tensor:
    return graph.tensors[name]


def operand(
    graph: ir.Graph,
    name: str,
    transforms: list[dict[str, Any]],
    shape: tuple[int, ...],
    constant: Callable[[np.ndarray], np.ndarray] = lambda x: x,
) -> Operand:
    """A runtime tensor with its host transforms, or the constant laid out at compile time by `constant`."""
    t = tensor(graph, name)
    if t.is_constant:
        data = np.asarray(t.data)
        return Operand(shape=shape, data=constant(data.astype(np.float32) if data.dtype.kind == "f" else data))
    return Operand(shape=shape, tensor=name, transforms=transforms)


def float_reason(graph: ir.Graph, op: ir.Op) -> str | None:
    """Why a float kernel cannot take this op's tensors (they must be float32; the NPU computes them in bf16)."""
    for t in graph.input_tensors(op) + graph.output_tensors(op):
        if t is not None and t.dtype != "float32":
            return f"{t.name} is {t.dtype}: NPU float kernels take float32 tensors (computed in bf16)"
    return None


Check = Callable[[ir.Graph, ir.Op], "str | None"]
Lowering = Callable[[ProgramBuilder, ir.Graph, ir.Op], None]
LOWERINGS: dict[str, tuple[Check, Lowering]] = {}


def lowers(*op_types: str, check: Check = float_reason) -> Callable[[Lowering], Lowering]:
    """Register a lowering for `op_types`; `check(graph, op)` returns why an op instance is unsupported, or None."""

    def register(fn: Lowering) -> Lowering:
        for op_type in op_types:
            if op_type in LOWERINGS:
                raise ValueError(f"{op_type} is lowered twice ({LOWERINGS[op_type][1].__name__}, {fn.__name__})")
            LOWERINGS[op_type] = (check, fn)
        return fn

    return register


def all_of(*checks: Check) -> Check:
    """A check that returns the first reason any of `checks` gives."""

    def check(graph: ir.Graph, op: ir.Op) -> str | None:
        return next((why for why in (c(graph, op) for c in checks) if why), None)

    return check
