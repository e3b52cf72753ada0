"""Builds the standard nodes that replace one com.microsoft node (contrib.py, contrib_attention.py), and the
registry of those lowerings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx_graphsurgeon as gs

from ragc.errors import ModelError

DOMAIN = "com.microsoft"
# onnxruntime registers this one in the default domain, where onnx does not know it
DEFAULT_DOMAIN_OPS = frozenset({"SimplifiedLayerNormalization"})


class NodeBuilder:
    """Standard nodes replacing one contrib node, named after it, appended to the graph."""

    def __init__(self, graph: gs.Graph, node: gs.Node, prefix: str) -> None:
        self.graph, self.node, self.opset = graph, node, graph.opset
        self.prefix = prefix  # unique in the graph: every new tensor and node is named under it
        self._count = 0

    def _name(self, what: str) -> str:
        self._count += 1
        return f"{self.prefix}/{what}_{self._count}"

    def const(self, value: Any, dtype: Any = np.float32) -> gs.Constant:
        return gs.Constant(self._name("const"), np.asarray(value, dtype=dtype))

    def op(self, op_type: str, inputs: list, out: gs.Variable | None = None, **attrs: Any) -> gs.Variable:
        """Append one node; numbers and arrays among `inputs` become float32 (ints: int64) constants."""
        tensors = [x if isinstance(x, gs.Tensor) else self._literal(x) for x in inputs]
        out = out if out is not None else gs.Variable(self._name(op_type))
        self.graph.nodes.append(gs.Node(op_type, self._name(op_type), dict(attrs), tensors, [out]))
        return out

    def op_multi(self, op_type: str, inputs: list, outputs: list[gs.Variable | None], **attrs: Any) -> None:
        """Append one node with several outputs (None: an output left out)."""
        tensors = [x if isinstance(x, gs.Tensor) else self._literal(x) for x in inputs]
        outs = [o if o is not None else gs.Variable.empty() for o in outputs]
        self.graph.nodes.append(gs.Node(op_type, self._name(op_type), dict(attrs), tensors, outs))

    def _literal(self, x: Any) -> gs.Tensor:
        if x is None or isinstance(x, str):
            return gs.Variable.empty()
        array = np.asarray(x)
        return self.const(array, np.int64 if array.dtype.kind in "iu" else np.float32)

    def input(self, index: int) -> gs.Tensor | None:
        """The node's input `index`, or None when it is left out."""
        inputs = self.node.inputs
        return inputs[index] if index < len(inputs) and inputs[index].name else None

    def output(self, index: int) -> gs.Variable | None:
        outputs = self.node.outputs
        return outputs[index] if index < len(outputs) and outputs[index].name else None

    def attr(self, name: str, default: Any) -> Any:
        return self.node.attrs.get(name, default)

    def refuse(self, variant: str) -> ModelError:
        return ModelError(
            f"{self.node.op} node {self.node.name!r}: {variant} is not supported; export without it "
            "(e.g. without onnxruntime's transformer optimizer) or compile the original model"
        )

    # standard-op helpers, valid at the graph's opset
    def reduce_mean(self, x: gs.Tensor, axes: list[int]) -> gs.Variable:
        if self.opset >= 18:
            return self.op("ReduceMean", [x, np.array(axes, np.int64)], keepdims=1)
        return self.op("ReduceMean", [x], axes=axes, keepdims=1)

    def rms_norm(self, x: gs.Tensor, scale: gs.Tensor, epsilon: float, axis: int, out: gs.Variable | None) -> None:
        """x / sqrt(mean(x^2) + epsilon) * scale over the axes from `axis` (as the contrib kernels compute it)."""
        if self.opset >= 23:
            self.op("RMSNormalization", [x, scale], out, axis=axis, epsilon=epsilon)
            return
        axes = list(range(axis, 0)) if axis < 0 else self._axes_from(x, axis)
        mean_square = self.reduce_mean(self.op("Mul", [x, x]), axes)
        inv = self.op("Reciprocal", [self.op("Sqrt", [self.op("Add", [mean_square, epsilon])])])
        self.op("Mul", [self.op("Mul", [x, inv]), scale], out)

    def _axes_from(self, x: gs.Tensor, axis: int) -> list[int]:
        if x.shape is None:
            raise self.refuse(f"axis={axis} on a tensor of unknown rank")
        return list(range(axis, len(x.shape)))

    def gelu(self, x: gs.Tensor, approximate: str, out: gs.Variable | None) -> None:
        if self.opset >= 20:
            self.op("Gelu", [x], out, approximate=approximate)
        elif approximate == "tanh":  # 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
            cube = self.op("Mul", [self.op("Mul", [self.op("Mul", [x, x]), x]), 0.044715])
            inner = self.op("Mul", [self.op("Add", [x, cube]), 0.7978845608028654])
            half = self.op("Mul", [x, 0.5])
            self.op("Mul", [half, self.op("Add", [self.op("Tanh", [inner]), 1.0])], out)
        else:  # 0.5 x (1 + erf(x / sqrt(2)))
            erf = self.op("Erf", [self.op("Mul", [x, 0.7071067811865476])])
            self.op("Mul", [self.op("Mul", [x, 0.5]), self.op("Add", [erf, 1.0])], out)


Lowering = Callable[[NodeBuilder], None]
LOWERINGS: dict[str, Lowering] = {}


def lowers(*op_types: str) -> Callable[[Lowering], Lowering]:
    def register(fn: Lowering) -> Lowering:
        LOWERINGS.update(dict.fromkeys(op_types, fn))
        return fn

    return register
