"""ragc's operator graph: a small, onnx-free view of a cleaned model that every later stage reads.

The front end builds it from a checked, shape-inferred, folded ONNX model. Codegen, the cost model and the
placement solvers read it without importing onnx. Ops are in topological order; every tensor has a static
shape and a numpy dtype name; constants (initializers) carry their data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name: "float32", "int64", ...
    data: np.ndarray | None = None  # set for constants

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


@dataclass
class Op:
    name: str  # unique within the graph
    op_type: str
    inputs: list[str]  # "" marks an omitted optional input
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)  # ints, floats, strings, lists, numpy arrays


@dataclass
class Graph:
    ops: list[Op]
    tensors: dict[str, Tensor]
    inputs: list[str]  # runtime inputs only (no initializers)
    outputs: list[str]
    opset: int = 17

    def op(self, name: str) -> Op:
        return self._ops_by_name()[name]

    def _ops_by_name(self) -> dict[str, Op]:
        return {op.name: op for op in self.ops}

    def producers(self) -> dict[str, Op]:
        """Tensor name -> the op that writes it."""
        return {out: op for op in self.ops for out in op.outputs if out}

    def consumers(self) -> dict[str, list[Op]]:
        """Tensor name -> the ops that read it, in graph order."""
        users: dict[str, list[Op]] = {}
        for op in self.ops:
            for name in op.inputs:
                if name:
                    users.setdefault(name, []).append(op)
        return users

    def input_tensors(self, op: Op) -> list[Tensor | None]:
        return [self.tensors[n] if n else None for n in op.inputs]

    def output_tensors(self, op: Op) -> list[Tensor]:
        return [self.tensors[n] for n in op.outputs if n]

    def subgraph(self, op_names: list[str]) -> Graph:
        """The ops named (kept in graph order) as a standalone graph: non-constant tensors read from outside
        become inputs; tensors used outside (or graph outputs) become outputs."""
        chosen = set(op_names)
        ops = [op for op in self.ops if op.name in chosen]
        produced = {o for op in ops for o in op.outputs if o}
        inputs: list[str] = []
        for op in ops:
            for name in op.inputs:
                if name and name not in produced and not self.tensors[name].is_constant and name not in inputs:
                    inputs.append(name)
        outside_readers = {n for op in self.ops if op.name not in chosen for n in op.inputs if n}
        outputs = [o for op in ops for o in op.outputs if o and (o in outside_readers or o in self.outputs)]
        used = {n for op in ops for n in op.inputs + op.outputs if n}
        tensors = {n: t for n, t in self.tensors.items() if n in used}
        return Graph(ops=ops, tensors=tensors, inputs=inputs, outputs=outputs, opset=self.opset)

    def in_place_updates(self) -> dict[str, str]:
        """Input -> output of each ScatterND that may write into its data input's own buffer (the input is read by
        nothing else and is not an output itself); backends that keep the input between runs update it there."""
        readers = self.consumers()
        return {
            op.inputs[0]: op.outputs[0]
            for op in self.ops
            if op.op_type == "ScatterND" and updates_input_in_place(self, op, readers)
        }


def updates_input_in_place(graph: Graph, op: Op, readers: dict[str, list[Op]]) -> bool:
    """Whether `op` (a ScatterND) may write into its data input's buffer: a graph input nothing else reads."""
    data = op.inputs[0]
    return data in graph.inputs and readers.get(data) == [op] and data not in graph.outputs
