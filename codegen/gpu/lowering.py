"""The GPU lowering registry: each supported op type maps to a function turning one op into kernel dispatches.

See codegen/gpu/KERNELS.md for how to add an op. A lowering reads only `ragc.ir` and returns `Dispatch`es; the
emitter (codegen/gpu/emit.py) renders and compiles their templates, lays out their buffers and writes the program.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from codegen.errors import LoweringError
from ragc.ir import Graph, Op

LOCAL_SIZE = 256  # default workgroup size of 1-D kernels
MAX_GROUPS_X = 65535  # the Vulkan minimum of maxComputeWorkGroupCount[0]

# numpy dtype name -> GLSL element type of a storage buffer (the emitter enables the needed storage features)
GLSL_TYPES = {
    "float32": "float",
    "float16": "float16_t",
    "bfloat16": "uint16_t",  # bf16 storage of a reduced-precision partition (codegen/gpu/precision.py)
    "int32": "int",
    "uint32": "uint",
    "int64": "int64_t",
    "int8": "int8_t",
    "uint8": "uint8_t",
    "bool": "uint8_t",
}


@dataclass(frozen=True)
class Dispatch:
    """One compute dispatch: `templates/<template>` rendered with `params`, tensors bound at set 0 binding 0.. in
    the order of `buffers` (the first `writes` of them written, the rest only read), launched with `groups`
    workgroups; `requires` and `subgroup` as the program's "kernel_requires" and "subgroup_size"."""

    template: str
    params: dict[str, Any]
    buffers: tuple[str, ...]
    groups: tuple[int, int, int]
    writes: int = 1
    requires: tuple[str, ...] = ()  # device requirements beyond what the SPIR-V's capabilities say (coopmat shapes)
    subgroup: int = 0  # a required subgroup size (VK_EXT_subgroup_size_control), 0 for the device's own


Lowering = Callable[[Graph, Op], list[Dispatch]]
LOWERINGS: dict[str, Lowering] = {}
CHECKS: dict[str, Callable[[Graph, Op], str | None]] = {}

# ops whose output shares the input's buffer (same bytes, new shape): no kernel at all
ALIAS_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"})


def lowers(*op_types: str, check: Callable[[Graph, Op], str | None] | None = None) -> Callable[[Lowering], Lowering]:
    """Register a lowering for `op_types`; `check(graph, op)` returns why an op instance is unsupported, or None."""

    def register(fn: Lowering) -> Lowering:
        for op_type in op_types:
            if op_type in LOWERINGS:
                raise LoweringError(f"{op_type} is lowered twice ({LOWERINGS[op_type].__name__}, {fn.__name__})")
            LOWERINGS[op_type] = fn
            if check is not None:
                CHECKS[op_type] = check
        return fn

    return register


def numel(shape: Sequence[int]) -> int:
    return int(math.prod(shape))


def glsl_type(dtype: str) -> str:
    if dtype not in GLSL_TYPES:
        raise LoweringError(f"dtype {dtype} has no GPU storage type; cast it on the CPU first")
    return GLSL_TYPES[dtype]


def grid(count: int, local: int = LOCAL_SIZE) -> tuple[int, int, int]:
    """Workgroups covering `count` invocations of `local` each, folded into y past the x limit; kernels read the
    flat index with `ragc_flat_id()` (templates/_common.glsl.j2) and guard with `if (i >= count) return;`."""
    groups = max(1, -(-count // local))
    if groups <= MAX_GROUPS_X:
        return (groups, 1, 1)
    return (MAX_GROUPS_X, -(-groups // MAX_GROUPS_X), 1)


def strides(shape: Sequence[int]) -> list[int]:
    """Row-major element strides."""
    out, step = [], 1
    for dim in reversed(shape):
        out.append(step)
        step *= dim
    return out[::-1]


def broadcast_strides(shape: Sequence[int], rank: int) -> list[int]:
    """Strides of a row-major tensor of `shape` read broadcast to `rank` axes (numpy's right alignment): 0 along
    every axis it lacks or has as 1."""
    padded = (1,) * (rank - len(shape)) + tuple(shape)
    return [0 if size == 1 else step for size, step in zip(padded, strides(padded), strict=True)]


def broadcast_index(src: Sequence[int], dst: Sequence[int], flat: str) -> str:
    """GLSL uint expression: the element of a `src`-shaped tensor read at flat index `flat` of the numpy broadcast
    `dst` shape."""
    if tuple(src) == tuple(dst):
        return flat
    padded = [1] * (len(dst) - len(src)) + list(src)
    terms = []
    for dim, (size, out_stride, in_stride) in enumerate(zip(padded, strides(dst), strides(padded), strict=True)):
        if size == 1:
            continue
        coord = flat if out_stride == 1 else f"({flat} / {out_stride}u)"
        if dim > 0:
            coord = f"({coord} % {dst[dim]}u)"
        terms.append(coord if in_stride == 1 else f"{coord} * {in_stride}u")
    return " + ".join(terms) or "0u"


def constant(graph: Graph, name: str) -> np.ndarray | None:
    """The data of an optional input when it is a constant, else None."""
    return graph.tensors[name].data if name else None


def attr(op: Op, name: str, default: Any) -> Any:
    value = op.attrs.get(name, default)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def fp32_reason(graph: Graph, op: Op) -> str | None:
    """The common check: every present input and output is float32 with a static, non-empty shape."""
    for name in [n for n in op.inputs if n] + [n for n in op.outputs if n]:
        t = graph.tensors[name]
        if t.dtype != "float32":
            return f"{name} is {t.dtype}, the GPU kernels take float32"
        if any(not isinstance(d, int) or d <= 0 for d in t.shape):
            return f"{name} has shape {t.shape}; the GPU needs static non-empty shapes"
    return None


def float_literal(value: float) -> str:
    """A GLSL float expression for `value` that survives the round trip exactly (inf and nan included)."""
    v = np.float32(value)
    if not np.isfinite(v):
        return f"uintBitsToFloat({int(v.view(np.uint32))}u)"
    text = repr(float(v))
    return text if ("." in text or "e" in text) else text + ".0"
