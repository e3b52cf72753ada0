"""GLSL expressions of the elementwise ops, typed: which dtypes each op takes and gives, and its code.

A value computes in its dtype's GLSL type (`COMPUTE`): float32 and float16 in `float`, int32 `int`, int64
`int64_t`, bool `bool`. NaN, Inf and -0.0 follow onnxruntime's CPU kernels (helpers in templates/_eltwise.glsl.j2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from codegen.gpu.lowering import attr, float_literal
from ragc.ir import Op

COMPUTE = {"float32": "float", "float16": "float", "int32": "int", "int64": "int64_t", "bool": "bool"}
FLOAT = ("float32",)
NUMERIC = ("float32", "int32", "int64")
VALUES = ("float32", "int32", "int64", "bool")
CASTS = (*VALUES, "float16")
FLOAT_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Arg:
    """One operand: a GLSL expression of type COMPUTE[dtype] ("" for an omitted optional input)."""

    code: str
    dtype: str


Expr = Callable[[Op, list[Arg]], str]


@dataclass(frozen=True)
class Signature:
    """The dtypes an op takes (`inputs`, per position, the last one repeating) and gives (`output`: a dtype, or
    "same" for the dtype of input `same_as`); inputs with the same `group` number must have one dtype."""

    inputs: tuple[tuple[str, ...], ...]
    output: str = "same"
    same_as: int = 0
    groups: tuple[int, ...] = (0,)


def literal(value: object, dtype: str) -> str:
    """A GLSL constant of COMPUTE[dtype] holding `value`."""
    if dtype == "bool":
        return "true" if bool(value) else "false"
    if dtype in ("float32", "float16"):
        return float_literal(float(value))
    v = int(value)
    if dtype == "int32":
        return f"int({v})" if v > -(2**31) else "int(0x80000000u)"
    return f"int64_t({v}l)" if v > -(2**63) else "int64_t(0x8000000000000000ul)"


def convert(code: str, src: str, dst: str) -> str:
    """`code` (COMPUTE[src]) as COMPUTE[dst], with onnxruntime's Cast semantics."""
    if COMPUTE[src] == COMPUTE[dst]:
        return code
    if dst == "bool":
        if src in ("float32", "float16"):  # on the bits: NaN and denormals are true, +-0 false
            return f"((floatBitsToUint({code}) & 0x7fffffffu) != 0u)"
        return f"({code} != {literal(0, src)})"
    if src == "bool":
        return f"({code} ? {literal(1, dst)} : {literal(0, dst)})"
    if src in ("float32", "float16") and dst in ("int32", "int64"):
        return f"ragc_to_{'int' if dst == 'int32' else 'int64'}({code})"
    return f"{COMPUTE[dst]}({code})"


def _binary(symbol: str) -> Expr:
    return lambda op, a: f"({a[0].code} {symbol} {a[1].code})"


def _compare(symbol: str) -> Expr:
    return lambda op, a: f"({a[0].code} {symbol} {a[1].code})"


def _call(fn: str) -> Expr:
    return lambda op, a: f"{fn}({a[0].code})"


def _numeric(float_fn: str, int_fn: str) -> Expr:
    """A unary op calling `float_fn` on floats and `int_fn` on integers."""
    return lambda op, a: f"{float_fn if a[0].dtype == 'float32' else int_fn}({a[0].code})"


def _sum(op: Op, a: list[Arg]) -> str:
    out = a[0].code
    for arg in a[1:]:
        out = f"({out} + {arg.code})"
    return out


def _fold(float_fn: str, int_fn: str) -> Expr:
    def expr(op: Op, a: list[Arg]) -> str:
        fn = float_fn if a[0].dtype == "float32" else int_fn
        out = a[0].code
        for arg in a[1:]:
            out = f"{fn}({out}, {arg.code})"
        return out

    return expr


def _div(op: Op, a: list[Arg]) -> str:
    return f"({a[0].code} / {a[1].code})"  # integer division truncates toward zero, as in C++


def _mod(op: Op, a: list[Arg]) -> str:
    x, y = a[0].code, a[1].code
    if a[0].dtype == "float32":
        return f"ragc_fmod({x}, {y})"
    rem = f"({x} - ({x} / {y}) * {y})"  # C's remainder: the sign of x
    if attr(op, "fmod", 0):
        return rem
    zero = literal(0, a[0].dtype)  # Python's: the sign of y
    return f"(({rem} != {zero} && (({rem} < {zero}) != ({y} < {zero}))) ? {rem} + {y} : {rem})"


def _pow(op: Op, a: list[Arg]) -> str:
    x, y = a[0].code, a[1].code
    # onnxruntime multiplies for a constant exponent of 2 or 3
    special = {2: f"({x} * {x})", 3: f"({x} * {x} * {x})", 1: x, 0.5: f"sqrt({x})"}
    for value, code in special.items():
        if y in (literal(value, "float32"), literal(value, "int64"), literal(value, "int32")):
            return code
    return f"ragc_pow({x}, {y if a[1].dtype == 'float32' else f'float({y})'})"


def _gelu(op: Op, a: list[Arg]) -> str:
    x = a[0].code
    if attr(op, "approximate", "none") == "tanh":
        return f"(0.5 * {x} * (1.0 + ragc_tanh(0.7978845608 * ({x} + 0.044715 * {x} * {x} * {x}))))"
    return f"(0.5 * {x} * (1.0 + ragc_erf({x} * 0.7071067812)))"


def _clip(op: Op, a: list[Arg]) -> str:
    """std::min(std::max(x, lo), hi) as onnxruntime; a float bound left out is the largest finite float."""
    x, dtype = a[0].code, a[0].dtype
    lo = a[1].code if len(a) > 1 and a[1].code else None
    hi = a[2].code if len(a) > 2 and a[2].code else None
    if dtype != "float32":
        out = x if lo is None else f"max({x}, {lo})"
        return out if hi is None else f"min({out}, {hi})"
    if op.attrs.keys() & {"min", "max"}:  # opset 6
        lo, hi = float_literal(attr(op, "min", -FLOAT_MAX)), float_literal(attr(op, "max", FLOAT_MAX))
    lo, hi = lo or float_literal(-FLOAT_MAX), hi or float_literal(FLOAT_MAX)
    return f"ragc_std_min(ragc_std_max({x}, {lo}), {hi})"


def _alpha(op: Op, default: float) -> str:
    return float_literal(attr(op, "alpha", default))


def _hard_sigmoid(x: str, alpha: str, beta: str) -> str:
    return f"ragc_std_max(ragc_std_min({alpha} * {x} + {beta}, 1.0), 0.0)"


def _is_inf(op: Op, a: list[Arg]) -> str:
    x = a[0].code
    pos, neg = attr(op, "detect_positive", 1), attr(op, "detect_negative", 1)
    if not (pos or neg):
        return "false"
    sign = "" if pos and neg else f" && {'!' if pos else ''}ragc_signbit({x})"
    return f"(ragc_isinf({x}){sign})"


def _where(op: Op, a: list[Arg]) -> str:
    # onnxruntime's float Where gives +0.0 for a selected -0.0 from X (not from Y); on the bits, as compilers fold
    # X + 0.0 to X even when told to keep signed zeros (lavapipe does)
    x = f"ragc_positive_zero({a[1].code})" if a[1].dtype == "float32" else a[1].code
    return f"({a[0].code} ? {x} : {a[2].code})"


def _cast(op: Op, a: list[Arg], out: str) -> str:
    code = convert(a[0].code, a[0].dtype, out)
    return f"ragc_round_half({code})" if out == "float16" and a[0].dtype != "float16" else code


def _unary(dtypes: tuple[str, ...], output: str = "same") -> Signature:
    return Signature(inputs=(dtypes,), output=output)


def _binary_sig(dtypes: tuple[str, ...], output: str = "same") -> Signature:
    return Signature(inputs=(dtypes, dtypes), output=output, groups=(0, 0))


_F, _N = _unary(FLOAT), _unary(NUMERIC)
OPS: dict[str, tuple[Signature, Expr]] = {
    "Add": (_binary_sig(NUMERIC), _binary("+")),
    "Sub": (_binary_sig(NUMERIC), _binary("-")),
    "Mul": (_binary_sig(NUMERIC), _binary("*")),
    "Div": (_binary_sig(NUMERIC), _div),
    "Mod": (_binary_sig(NUMERIC), _mod),
    "Pow": (Signature(inputs=(FLOAT, NUMERIC), groups=(0, 1)), _pow),
    "Sqrt": (_F, _call("sqrt")),
    "Exp": (_F, _call("exp")),
    "Log": (_F, _call("log")),
    "Abs": (_N, _call("abs")),
    "Neg": (_N, lambda op, a: f"(-{a[0].code})"),
    "Sign": (_N, _numeric("ragc_sign", "sign")),
    "Floor": (_F, _call("floor")),
    "Ceil": (_F, _call("ceil")),
    "Round": (_F, _call("roundEven")),
    "Reciprocal": (_F, lambda op, a: f"(1.0 / {a[0].code})"),
    "Sin": (_F, lambda op, a: f"ragc_sincos({a[0].code}, false)"),
    "Cos": (_F, lambda op, a: f"ragc_sincos({a[0].code}, true)"),
    "Relu": (_F, _call("ragc_relu")),
    "LeakyRelu": (_F, lambda op, a: f"({a[0].code} >= 0.0 ? {a[0].code} : {_alpha(op, 0.01)} * {a[0].code})"),
    "Sigmoid": (_F, _call("ragc_sigmoid")),
    "Tanh": (_F, _call("ragc_tanh")),
    "Erf": (_F, _call("ragc_erf")),
    "Gelu": (_F, _gelu),
    "Softplus": (_F, lambda op, a: f"(ragc_relu({a[0].code}) + log(1.0 + exp(-abs({a[0].code}))))"),
    "Clip": (Signature(inputs=(NUMERIC, NUMERIC, NUMERIC), groups=(0, 0, 0)), _clip),
    "HardSigmoid": (
        _F,
        lambda op, a: _hard_sigmoid(a[0].code, _alpha(op, 0.2), float_literal(attr(op, "beta", 0.5))),
    ),
    "HardSwish": (_F, lambda op, a: f"({a[0].code} * {_hard_sigmoid(a[0].code, float_literal(1 / 6), '0.5')})"),
    "IsNaN": (_unary(FLOAT, "bool"), _call("ragc_isnan")),
    "IsInf": (_unary(FLOAT, "bool"), _is_inf),
    "Not": (_unary(("bool",)), lambda op, a: f"(!{a[0].code})"),
    "And": (_binary_sig(("bool",)), _binary("&&")),
    "Or": (_binary_sig(("bool",)), _binary("||")),
    "Xor": (_binary_sig(("bool",)), _binary("!=")),
    "Where": (Signature(inputs=(("bool",), VALUES, VALUES), same_as=1, groups=(0, 1, 1)), _where),
    "Equal": (_binary_sig(VALUES, "bool"), _compare("==")),
    "Less": (_binary_sig(NUMERIC, "bool"), _compare("<")),
    "Greater": (_binary_sig(NUMERIC, "bool"), _compare(">")),
    "LessOrEqual": (_binary_sig(NUMERIC, "bool"), _compare("<=")),
    "GreaterOrEqual": (_binary_sig(NUMERIC, "bool"), _compare(">=")),
    "Sum": (Signature(inputs=(FLOAT,)), _sum),
    "Mean": (Signature(inputs=(FLOAT,)), lambda op, a: f"({_sum(op, a)} * {float_literal(1 / len(a))})"),
    "Max": (Signature(inputs=(NUMERIC,)), _fold("ragc_max", "max")),
    "Min": (Signature(inputs=(NUMERIC,)), _fold("ragc_min", "min")),
}
CAST = Signature(inputs=(CASTS,), output="to")


def signature(op_type: str) -> Signature:
    return CAST if op_type == "Cast" else OPS[op_type][0]


def expression(op: Op, args: list[Arg], out_dtype: str) -> str:
    """The GLSL code of one op on its operands."""
    if op.op_type == "Cast":
        return _cast(op, args, out_dtype)
    return OPS[op.op_type][1](op, args)


def scalar_literal(data: np.ndarray, dtype: str) -> str:
    """A one-element constant as a GLSL literal of its compute type."""
    return literal(data.reshape(-1)[0].item(), dtype)
