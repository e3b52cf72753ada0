"""Elementwise ops on the GPU: GLSL expressions per op, trees of them fused into one kernel or a GEMM/Conv epilogue."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from codegen.gpu.lowering import Dispatch, attr, broadcast_index, float_literal, glsl_type, grid, lowers, numel
from ragc.ir import Graph, Op

Expr = Callable[[Op, list[str]], str]


def _binary(symbol: str) -> Expr:
    return lambda op, a: f"({a[0]} {symbol} {a[1]})"


def _compare(symbol: str) -> Expr:
    return lambda op, a: f"(({a[0]} {symbol} {a[1]}) ? 1.0 : 0.0)"


def _call(fn: str) -> Expr:
    return lambda op, a: f"{fn}({a[0]})"


def _fold(fn: str) -> Expr:
    def expr(op: Op, a: list[str]) -> str:
        out = a[0]
        for arg in a[1:]:
            out = f"{fn}({out}, {arg})"
        return out

    return expr


def _gelu(op: Op, a: list[str]) -> str:
    x = a[0]
    if attr(op, "approximate", "none") == "tanh":
        return f"(0.5 * {x} * (1.0 + ragc_tanh(0.7978845608 * ({x} + 0.044715 * {x} * {x} * {x}))))"
    return f"(0.5 * {x} * (1.0 + ragc_erf({x} * 0.7071067812)))"


def _clip(op: Op, a: list[str]) -> str:
    out = a[0]
    lo = a[1] if len(a) > 1 and a[1] else ("min" in op.attrs and float_literal(op.attrs["min"]))
    hi = a[2] if len(a) > 2 and a[2] else ("max" in op.attrs and float_literal(op.attrs["max"]))
    if lo:
        out = f"max({out}, {lo})"
    if hi:
        out = f"min({out}, {hi})"
    return out


def _alpha(default: float) -> Callable[[Op], str]:
    return lambda op: float_literal(attr(op, "alpha", default))


EXPRESSIONS: dict[str, Expr] = {
    "Add": _binary("+"),
    "Sub": _binary("-"),
    "Mul": _binary("*"),
    "Div": _binary("/"),
    "Pow": lambda op, a: f"ragc_pow({a[0]}, {a[1]})",
    "Sqrt": _call("sqrt"),
    "Exp": _call("exp"),
    "Log": _call("log"),
    "Abs": _call("abs"),
    "Floor": _call("floor"),
    "Ceil": _call("ceil"),
    "Neg": lambda op, a: f"(-{a[0]})",
    "Reciprocal": lambda op, a: f"(1.0 / {a[0]})",
    "Relu": lambda op, a: f"max({a[0]}, 0.0)",
    "LeakyRelu": lambda op, a: f"({a[0]} >= 0.0 ? {a[0]} : {_alpha(0.01)(op)} * {a[0]})",
    "Sigmoid": _call("ragc_sigmoid"),
    "Tanh": _call("ragc_tanh"),
    "Erf": _call("ragc_erf"),
    "Gelu": _gelu,
    "Softplus": lambda op, a: f"(max({a[0]}, 0.0) + log(1.0 + exp(-abs({a[0]}))))",
    "Clip": _clip,
    "HardSigmoid": lambda op, a: (
        f"clamp({_alpha(0.2)(op)} * {a[0]} + {float_literal(attr(op, 'beta', 0.5))}, 0.0, 1.0)"
    ),
    "HardSwish": lambda op, a: f"({a[0]} * clamp({a[0]} * {float_literal(1 / 6)} + 0.5, 0.0, 1.0))",
    "Where": lambda op, a: f"({a[0]} != 0.0 ? {a[1]} : {a[2]})",
    "Equal": _compare("=="),
    "Less": _compare("<"),
    "Greater": _compare(">"),
    "LessOrEqual": _compare("<="),
    "GreaterOrEqual": _compare(">="),
    "Sum": _fold("ragc_add"),
    "Mean": lambda op, a: f"({_fold('ragc_add')(op, a)} * {float_literal(1 / len(a))})",
    "Max": _fold("max"),
    "Min": _fold("min"),
}
BOOL_OUT = frozenset({"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"})
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


def eltwise_reason(graph: Graph, op: Op) -> str | None:
    for i, name in enumerate(op.inputs):
        if not name:
            continue
        t = graph.tensors[name]
        wanted = "bool" if (op.op_type == "Where" and i == 0) else "float32"
        if t.dtype != wanted:
            return f"input {name} is {t.dtype}; the GPU {op.op_type} takes {wanted}"
    out = graph.tensors[op.outputs[0]]
    if out.dtype != ("bool" if op.op_type in BOOL_OUT else "float32"):
        return f"output {out.name} is {out.dtype}"
    if numel(out.shape) == 0:
        return f"output {out.name} is empty"
    return None


@dataclass(frozen=True)
class Fragment:
    """GLSL for one chain: buffer declarations of the leaves read from memory and a function computing one
    output element, `float <name>(float primary, uint i)` where `i` is the flat output index."""

    buffers: tuple[tuple[int, str, str, str], ...]  # (binding, glsl name, element type, access) for buffer()
    tensors: tuple[str, ...]  # tensor bound at each of `buffers`, in order
    function: str


def chain_fragment(graph: Graph, chain: Chain, primary: str | None, first_binding: int, name: str) -> Fragment:
    """The chain as a GLSL function; `primary` (a leaf) comes in as the argument instead of a memory read."""
    out_shape = graph.tensors[chain.output].shape
    values: dict[str, str] = {}
    buffers, tensors, lines = [], [], []
    for leaf in chain.leaves:
        t = graph.tensors[leaf]
        if leaf == primary:
            values[leaf] = "primary"
        elif t.is_constant and numel(t.shape) == 1:
            values[leaf] = float_literal(float(t.data.reshape(-1)[0]))
        else:
            binding = first_binding + len(buffers)
            buffers.append((binding, f"leaf{binding}", glsl_type(t.dtype), "readonly"))
            tensors.append(leaf)
            values[leaf] = f"v{binding}"
            load = f"leaf{binding}.data[{broadcast_index(t.shape, out_shape, 'i')}]"
            lines.append(
                f"float v{binding} = float({load});"
                if t.dtype == "float32"
                else f"float v{binding} = float(uint({load}));"
            )
    for k, op in enumerate(chain.ops):
        args = [values[n] if n else "" for n in op.inputs]
        lines.append(f"float t{k} = {EXPRESSIONS[op.op_type](op, args)};")
        values[op.outputs[0]] = f"t{k}"
    body = "\n    ".join(lines)
    function = f"float {name}(float primary, uint i) {{\n    {body}\n    return {values[chain.output]};\n}}"
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


@lowers(*EXPRESSIONS, check=eltwise_reason)
def lower_eltwise(graph: Graph, op: Op) -> list[Dispatch]:
    chain = chain_of(op)
    out = graph.tensors[chain.output]
    fragment = chain_fragment(graph, chain, None, 1, "ragc_eltwise")
    params = {
        "count": numel(out.shape),
        "out_type": glsl_type(out.dtype),
        "out_bool": out.dtype == "bool",
        "leaves": fragment.buffers,
        "function": fragment.function,
    }
    return [Dispatch("eltwise.comp.j2", params, (chain.output, *fragment.tensors), grid(params["count"]))]
