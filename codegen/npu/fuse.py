"""Elementwise chains fused into NPU GEMM epilogues: which ops after a MatMul, Gemm or (im2col) Conv run on the
GEMM's fp32 accumulator tile before it is written, instead of as kernels of their own.

The GEMM design compiles every epilogue into one resident program and picks them per dispatch by a runtime
parameter (mlir-aie programming_examples/ml/mm_activation_epilogue), so a fused chain costs no reconfiguration.
A chain follows the GEMM's output while each tensor has exactly one reader and is not a graph output: a bias
(Add of a constant row), a residual or gate (Add / Mul of a runtime tensor of the output's shape), a constant scale
(Mul by a scalar) and the activations Relu, Gelu, Sigmoid, Tanh, Swish (alpha 1) and Clip (constant bounds).
Depthwise convolutions (a vector kernel) take bias, scale and activation epilogues the same way. The cost model
reads the same plan (ragc.costmodel.npu_ops), so what placement prices is what the emitter writes.
"""

from __future__ import annotations

import math

from ragc import ir

PRODUCERS = frozenset({"MatMul", "Gemm", "Conv"})
ACTIVATIONS = {"Relu": "relu", "Gelu": "gelu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Swish": "swish", "Clip": "clip"}
DEPTHWISE_KINDS = frozenset({"bias", "scale", *ACTIVATIONS.values()})  # a depthwise conv's epilogue: no operands
MAX_CHAIN = 6


def epilogues(graph: ir.Graph) -> dict[str, list[str]]:
    """GEMM-family op name -> the op names fused into its epilogue, in order (only GEMMs with a chain appear)."""
    consumers, producers = graph.consumers(), graph.producers()
    position = {op.name: k for k, op in enumerate(graph.ops)}
    outputs = set(graph.outputs)
    plan: dict[str, list[str]] = {}
    for op in graph.ops:
        if op.op_type not in PRODUCERS or not _gemm_output_ok(graph, op):
            continue
        chain: list[str] = []
        tensor = op.outputs[0]
        while len(chain) < MAX_CHAIN and tensor not in outputs:
            silu = _silu(graph, consumers, tensor, outputs)
            if silu is not None and not is_depthwise(graph, op):
                chain += [silu[0].name, silu[1].name]
                tensor = silu[1].outputs[0]
                continue
            if len(consumers.get(tensor, [])) != 1:
                break
            nxt = consumers[tensor][0]
            kind = epilogue_kind(graph, nxt, tensor)
            if kind is None or not _ready(nxt, tensor, producers, position, op.name):
                break
            if is_depthwise(graph, op) and kind not in DEPTHWISE_KINDS:
                break
            chain.append(nxt.name)
            tensor = nxt.outputs[0]
        if chain:
            plan[op.name] = chain
    return plan


def _silu(
    graph: ir.Graph, consumers: dict[str, list[ir.Op]], tensor: str, outputs: set[str]
) -> tuple[ir.Op, ir.Op] | None:
    """x * Sigmoid(x), the usual export of SiLU before opset 24's Swish: (the Sigmoid, the Mul), or None."""
    readers = consumers.get(tensor, [])
    if len(readers) != 2:
        return None
    sig = next((r for r in readers if r.op_type == "Sigmoid"), None)
    mul = next((r for r in readers if r.op_type == "Mul"), None)
    if sig is None or mul is None or sig.outputs[0] in outputs or set(mul.inputs) != {tensor, sig.outputs[0]}:
        return None
    return (sig, mul) if [c.name for c in consumers.get(sig.outputs[0], [])] == [mul.name] else None


def chain_entries(graph: ir.Graph, gemm: ir.Op, chain: list[str]) -> list[tuple[str, ir.Op, str | None]]:
    """The epilogue of a fused chain: (kind, op, its other operand or None) per entry; a SiLU pair (x * Sigmoid(x))
    is one "swish" entry on its Mul."""
    entries: list[tuple[str, ir.Op, str | None]] = []
    via, ops, k = gemm.outputs[0], [graph.op(n) for n in chain], 0
    while k < len(ops):
        op = ops[k]
        pair = op.op_type == "Sigmoid" and k + 1 < len(ops) and set(ops[k + 1].inputs) == {via, op.outputs[0]}
        if pair:
            op, k = ops[k + 1], k + 1
            entries.append(("swish", op, None))
        else:
            entries.append((epilogue_kind(graph, op, via), op, next((n for n in op.inputs if n and n != via), None)))
        via, k = op.outputs[0], k + 1
    return entries


def _ready(op: ir.Op, via: str, producers: dict[str, ir.Op], position: dict[str, int], gemm: str) -> bool:
    """A runtime second operand must exist when the GEMM runs: a graph input or an earlier op's output (then the
    GEMM is also the op's closest producer, so placement puts the op in the GEMM's unit)."""
    others = [n for n in op.inputs if n and n != via and n in producers]
    return all(position[producers[n].name] < position[gemm] for n in others)


def epilogue_kind(graph: ir.Graph, op: ir.Op, via: str) -> str | None:
    """The epilogue this op becomes when it reads the GEMM chain's tensor `via`, or None when it cannot fuse."""
    if op.op_type in ACTIVATIONS:
        if op.op_type == "Swish" and float(op.attrs.get("alpha", 1.0)) != 1.0:
            return None
        if op.op_type == "Clip" and clip_bounds(graph, op) is None:
            return None
        return ACTIVATIONS[op.op_type] if _float(graph, op) else None
    if op.op_type not in ("Add", "Mul") or len(op.inputs) != 2 or not _float(graph, op):
        return None
    chained = graph.tensors[via]
    other = graph.tensors[op.inputs[1] if op.inputs[0] == via else op.inputs[0]]
    if other.name == via:
        return None
    if graph.tensors[op.outputs[0]].shape != chained.shape:
        return None  # the other operand would broadcast the output to a larger shape
    if other.is_constant:
        size = math.prod(other.shape)
        if op.op_type == "Mul":
            return "scale" if size == 1 else None
        return "bias" if _row_constant(other, chained) else None
    return ("add" if op.op_type == "Add" else "mul") if other.shape == chained.shape else None


def _row_constant(other: ir.Tensor, chained: ir.Tensor) -> bool:
    """A constant the size of the GEMM's N that broadcasts along it: [N] / [1, N] (MatMul) or [C, 1, 1] (Conv)."""
    if len(chained.shape) == 4:  # NCHW conv output: a per-channel constant
        dims = (1,) * (4 - len(other.shape)) + tuple(other.shape)
        return dims[0] == 1 and dims[1] == chained.shape[1] and dims[2:] == (1, 1)
    dims = tuple(other.shape)
    return bool(dims) and dims[-1] == chained.shape[-1] and math.prod(dims[:-1]) == 1


def clip_bounds(graph: ir.Graph, op: ir.Op) -> tuple[float, float] | None:
    """A Clip's (min, max) when both are constants or absent, else None."""
    bounds = [-math.inf, math.inf]
    for i, name in enumerate(op.inputs[1:3]):
        if name:
            t = graph.tensors[name]
            if not t.is_constant or math.prod(t.shape) != 1:
                return None
            bounds[i] = float(t.data.reshape(-1)[0])
    return bounds[0], bounds[1]


def is_depthwise(graph: ir.Graph, op: ir.Op) -> bool:
    """A Conv with one filter per input channel (group = channels in = channels out)."""
    if op.op_type != "Conv" or len(graph.tensors[op.inputs[0]].shape) != 4:
        return False
    groups, channels = int(op.attrs.get("group", 1)), graph.tensors[op.inputs[0]].shape[1]
    return groups > 1 and groups == channels == graph.tensors[op.outputs[0]].shape[1]


def _gemm_output_ok(graph: ir.Graph, op: ir.Op) -> bool:
    if op.op_type == "Conv":
        return int(op.attrs.get("group", 1)) == 1 or is_depthwise(graph, op)
    return graph.tensors[op.outputs[0]].dtype == "float32"


def _float(graph: ir.Graph, op: ir.Op) -> bool:
    return all(graph.tensors[n].dtype == "float32" for n in [*op.inputs, *op.outputs] if n)
