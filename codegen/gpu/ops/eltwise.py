"""Elementwise ops on the GPU: trees of typed expressions (expressions.py) fused into one kernel or a GEMM/Conv
epilogue."""

from __future__ import annotations

from dataclasses import dataclass

from codegen.gpu.lowering import Dispatch, broadcast_index, glsl_type, grid, lowers, numel
from codegen.gpu.ops.expressions import COMPUTE, Arg, expression, scalar_literal, signature
from codegen.gpu.ops.expressions import OPS as _OPS
from ragc.ir import Graph, Op

EXPRESSIONS = frozenset({*_OPS, "Cast"})  # every op type computed elementwise (and so fusable)
EPILOGUE_ANCHORS = frozenset({"Conv", "Gemm", "MatMul"})  # their lowerings accept a fused elementwise tail


@dataclass(frozen=True)
class Chain:
    """A tree of elementwise ops computed in one kernel: `ops` in graph order (the last one writes `output`),
    `leaves` the tensors read from memory (first use order)."""

    ops: tuple[Op, ...]
    leaves: tuple[str, ...]
    output: str


def chain_of(op: Op) -> Chain:
    """The chain attached by the fusion pass (`attrs["ragc_chain"]`), or the op alone."""
    found = op.attrs.get("ragc_chain")
    if found is not None:
        return found
    return Chain(ops=(op,), leaves=tuple(dict.fromkeys(n for n in op.inputs if n)), output=op.outputs[0])


def _output_dtype(graph: Graph, op: Op) -> str:
    sig = signature(op.op_type)
    if sig.output == "same":
        return graph.tensors[op.inputs[sig.same_as]].dtype
    return graph.tensors[op.outputs[0]].dtype if sig.output == "to" else sig.output


def eltwise_reason(graph: Graph, op: Op) -> str | None:
    """None when the op's dtypes are ones its GPU expression takes, with static, non-empty shapes."""
    sig = signature(op.op_type)
    group_dtype: dict[int, str] = {}
    for i, name in enumerate(op.inputs):
        if not name:
            continue
        dtype = graph.tensors[name].dtype
        allowed = sig.inputs[min(i, len(sig.inputs) - 1)]
        if dtype not in allowed:
            return f"input {name} is {dtype}; the GPU {op.op_type} takes {'/'.join(allowed)}"
        if group_dtype.setdefault(sig.groups[min(i, len(sig.groups) - 1)], dtype) != dtype:
            return f"the inputs of {op.op_type} differ in dtype ({dtype}, {group_dtype[sig.groups[0]]})"
    out = graph.tensors[op.outputs[0]]
    wanted = _output_dtype(graph, op)
    if out.dtype != wanted or out.dtype not in COMPUTE:
        return f"output {out.name} is {out.dtype}; the GPU {op.op_type} gives {wanted}"
    if op.op_type == "Mod" and out.dtype == "float32" and not op.attrs.get("fmod", 0):
        return "Mod of floats needs fmod=1 (the ONNX rule)"
    for name in [n for n in op.inputs if n] + [out.name]:
        shape = graph.tensors[name].shape
        if any(not isinstance(d, int) or d <= 0 for d in shape):
            return f"{name} has shape {shape}; the GPU needs static non-empty shapes"
    return None


@dataclass(frozen=True)
class Fragment:
    """GLSL for one chain: buffer declarations of the leaves read from memory and a function computing one
    output element, `<type> <name>(float primary, uint i)` where `i` is the flat output index and <type> the
    compute type of the chain's output."""

    buffers: tuple[tuple[int, str, str, str], ...]  # (binding, glsl name, element type, access) for buffer()
    tensors: tuple[str, ...]  # tensor bound at each of `buffers`, in order
    function: str


def load(dtype: str, code: str) -> str:
    """A stored element (its glsl_type) as its compute type."""
    loads = {"bool": f"(uint({code}) != 0u)", "float16": f"float({code})", "bfloat16": f"ragc_bf16({code})"}
    return loads.get(dtype, code)


def store(dtype: str, code: str) -> str:
    """A computed value as the element type stored for `dtype`."""
    stores = {
        "bool": f"uint8_t({code} ? 1u : 0u)",
        "float16": f"float16_t({code})",
        "bfloat16": f"uint16_t(ragc_bf16_bits({code}))",
    }
    return stores.get(dtype, code)


def logical(dtype: str) -> str:
    """The dtype an expression sees for a value stored as `dtype`: 16-bit floats compute as float32."""
    return "float32" if dtype in ("float16", "bfloat16") else dtype


def chain_fragment(graph: Graph, chain: Chain, primary: str | None, first_binding: int, name: str) -> Fragment:
    """The chain as a GLSL function; `primary` (a float leaf) comes in as the argument instead of a memory read."""
    out_shape = graph.tensors[chain.output].shape
    values: dict[str, Arg] = {}
    buffers, tensors, lines = [], [], []
    for leaf in chain.leaves:
        t = graph.tensors[leaf]
        if leaf == primary:
            values[leaf] = Arg("primary", logical(t.dtype))
        elif t.is_constant and numel(t.shape) == 1:
            values[leaf] = Arg(scalar_literal(t.data, t.dtype), t.dtype)
        else:
            binding = first_binding + len(buffers)
            buffers.append((binding, f"leaf{binding}", glsl_type(t.dtype), "readonly"))
            tensors.append(leaf)
            values[leaf] = Arg(f"v{binding}", logical(t.dtype))
            element = f"leaf{binding}.data[{broadcast_index(t.shape, out_shape, 'i')}]"
            lines.append(f"{COMPUTE[logical(t.dtype)]} v{binding} = {load(t.dtype, element)};")
    for k, op in enumerate(chain.ops):
        out = graph.tensors[op.outputs[0]].dtype  # a Cast to float16 rounds here, whatever the device's rounding
        code = expression(
            op, [values[n] if n else Arg("", "") for n in op.inputs], "float32" if out == "bfloat16" else out
        )
        lines.append(f"{COMPUTE[logical(out)]} t{k} = {code};")
        values[op.outputs[0]] = Arg(f"t{k}", logical(out))
    body = "\n    ".join(lines)
    result = COMPUTE[logical(graph.tensors[chain.output].dtype)]
    function = f"{result} {name}(float primary, uint i) {{\n    {body}\n    return {values[chain.output].code};\n}}"
    return Fragment(buffers=tuple(buffers), tensors=tuple(tensors), function=function)


def identity_fragment(name: str) -> Fragment:
    return Fragment(buffers=(), tensors=(), function=f"float {name}(float primary, uint i) {{ return primary; }}")


def own_inputs(op: Op) -> list[str]:
    """The inputs of a Conv/Gemm/MatMul without the epilogue leaves the fusion pass appended."""
    chain = op.attrs.get("ragc_epilogue")
    return op.inputs[: len(op.inputs) - len(chain.leaves) + 1] if chain is not None else op.inputs


def epilogue(graph: Graph, op: Op, first_binding: int) -> tuple[Fragment, str]:
    """The fused tail of a Conv/Gemm/MatMul (identity when none) and the tensor the kernel finally writes."""
    chain = op.attrs.get("ragc_epilogue")
    if chain is None:
        return identity_fragment("ragc_epilogue"), op.outputs[0]
    return chain_fragment(graph, chain, op.attrs["ragc_epilogue_input"], first_binding, "ragc_epilogue"), chain.output


@lowers(*sorted(EXPRESSIONS), check=eltwise_reason)
def lower_eltwise(graph: Graph, op: Op) -> list[Dispatch]:
    chain = chain_of(op)
    out = graph.tensors[chain.output]
    fragment = chain_fragment(graph, chain, None, 1, "ragc_eltwise")
    params = {
        "count": numel(out.shape),
        "out_type": glsl_type(out.dtype),
        "value_type": COMPUTE[logical(out.dtype)],
        "store": store(out.dtype, "v"),
        "leaves": fragment.buffers,
        "function": fragment.function,
    }
    return [Dispatch("eltwise.comp.j2", params, (chain.output, *fragment.tensors), grid(params["count"]))]
