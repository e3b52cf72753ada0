"""Reduced precision on the GPU: which tensors of a fused partition are stored in 16 bits, what GEMMs compute in.

A partition's inputs and outputs keep their dtypes; an inner float32 tensor (activation or weight) is stored as
float16 or bfloat16 when every kernel that writes or reads it goes through the storage accessors of
templates/_common.glsl.j2 (`NARROW_OPS`), which convert to float on load and back on store. Everything else
stays float32, so a kernel that does not know 16-bit storage simply reads and writes float32 tensors. Arithmetic
is float32 everywhere (sums, Softmax and LayerNorm statistics, attention scores) except the GEMM and convolution
tiles of "fp16" on a device with shaderFloat16, which multiply and accumulate in float16.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import ml_dtypes
import numpy as np

from codegen.gpu.lowering import ALIAS_OPS, numel
from codegen.gpu.ops.eltwise import EXPRESSIONS
from codegen.gpu.ops.gemm import COOPMAT_SHAPE
from codegen.gpu.ops.reduce import REDUCE_OPS
from ragc.ir import Graph, Op, Tensor

PRECISIONS = ("fp32", "fp16", "bf16", "mixed")
STORAGE = {"fp32": "float32", "fp16": "float16", "mixed": "float16", "bf16": "bfloat16"}
GEMM_OPS = frozenset({"Conv", "Gemm", "MatMul"})
NARROW_OPS = frozenset(
    {
        *EXPRESSIONS,
        *GEMM_OPS,
        *REDUCE_OPS,
        *("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Softmax"),
        *("LayerNormalization", "RMSNormalization", "Attention", "ragc.FusedAttention"),
        *("Transpose", "Expand", "Slice", "Split", "Concat", "Gather"),  # bit copies of any dtype
    }
)
# the templates those ops dispatch; emit refuses a 16-bit tensor bound to any other
NARROW_TEMPLATES = frozenset(
    {
        *("eltwise.comp.j2", "gemm.comp.j2", "gemm_reduce.comp.j2", "conv_direct.comp.j2", "pool.comp.j2"),
        "coopmat_gemm.comp.j2",
        *("softmax.comp.j2", "reduce.comp.j2", "layernorm.comp.j2", "attention.comp.j2"),
        *("strided.comp.j2", "gather.comp.j2"),
    }
)


@dataclass(frozen=True)
class Precision:
    """What one GPU partition is compiled for: `name` as asked, the storage dtype of its inner float tensors and the
    arithmetic of its GEMM/convolution tiles."""

    name: str = "fp32"
    storage: str = "float32"
    gemm_math: str = "float32"
    coopmat: bool = False  # GEMMs and convolutions on cooperative matrices (fp16 in, fp32 accumulation)

    @property
    def reduced(self) -> bool:
        return self.storage != "float32"

    def describe(self) -> str:
        if not self.reduced:
            return "fp32 storage and arithmetic"
        storage = {"float16": "fp16", "bfloat16": "bf16"}[self.storage]
        gemm = "fp16" if self.gemm_math == "float16" else "fp32"
        tiles = "; large GEMMs/convs on cooperative matrices (fp16 x fp16 -> fp32)" if self.coopmat else ""
        return f"{storage} storage, {gemm} GEMM/conv arithmetic, fp32 elsewhere (sums, Softmax, norms){tiles}"


def choose(name: str, features: frozenset[str] | set[str] = frozenset()) -> Precision:
    """The precision `name` means on a device with `features` (VkPhysicalDevice* feature names and coopmat shapes):
    fp16 arithmetic needs shaderFloat16, cooperative matrices the 16x8x16 fp16 shape and subgroup size control;
    bf16 is always storage only (bf16 arithmetic needs VK_KHR_shader_bfloat16 and a GLSL compiler with
    GL_EXT_bfloat16, which glslc 2023.2 is not)."""
    if name not in PRECISIONS:
        raise ValueError(f"precision {name!r} is not one of {', '.join(PRECISIONS)}")
    math = "float16" if name == "fp16" and "shaderFloat16" in features else "float32"
    coopmat = STORAGE[name] == "float16" and {COOPMAT_SHAPE, "subgroupSizeControl"} <= set(features)
    return Precision(name, STORAGE[name], math, coopmat)


def _groups(graph: Graph) -> dict[str, str]:
    """Tensor -> the root of its alias group (Reshape and the like share one buffer, so one dtype)."""
    root: dict[str, str] = {}

    def find(name: str) -> str:
        while root.get(name, name) != name:
            name = root[name]
        return name

    for op in graph.ops:
        if op.op_type in ALIAS_OPS:
            a, b = find(op.inputs[0]), find(op.outputs[0])
            if a != b:
                root[b] = a
    return {name: find(name) for name in graph.tensors}


def _narrow_user(op: Op, tensor: str) -> bool:
    """Whether `op` may read or write `tensor` in 16 bits (LayerNormalization's statistics stay float32)."""
    if op.op_type not in NARROW_OPS:
        return False
    return not (op.op_type == "LayerNormalization" and tensor in op.outputs[1:])


def narrowed_tensors(graph: Graph) -> frozenset[str]:
    """The float32 tensors of a fused partition that can be stored in 16 bits."""
    group_of = _groups(graph)
    members: dict[str, list[str]] = {}
    for name, root in group_of.items():
        members.setdefault(root, []).append(name)
    users: dict[str, list[Op]] = {}
    for op in graph.ops:
        if op.op_type not in ALIAS_OPS:
            for name in {n for n in op.inputs + op.outputs if n}:
                users.setdefault(name, []).append(op)
    boundary = set(graph.inputs) | set(graph.outputs)
    out: set[str] = set()
    for names in members.values():
        tensors = [graph.tensors[n] for n in names]
        if (
            all(t.dtype == "float32" and numel(t.shape) > 1 for t in tensors)
            and not boundary & set(names)
            and all(_narrow_user(op, n) for n in names for op in users.get(n, []))
            and any(users.get(n) for n in names)
        ):
            out.update(names)
    return frozenset(out)


def _narrowed(t: Tensor, storage: str) -> Tensor:
    if t.data is None:
        return replace(t, dtype=storage)
    kind = np.float16 if storage == "float16" else ml_dtypes.bfloat16
    return replace(t, dtype=storage, data=t.data.astype(kind))


def narrow(graph: Graph, precision: Precision) -> Graph:
    """A copy of the fused graph with the tensors of `narrowed_tensors` in `precision.storage` (weights converted,
    rounding to nearest even) and GEMM-shaped ops marked with their tile arithmetic (`attrs["ragc_math"]`)."""
    if not precision.reduced:
        return graph
    names = narrowed_tensors(graph)
    tensors = {n: _narrowed(t, precision.storage) if n in names else t for n, t in graph.tensors.items()}
    ops = [
        replace(op, attrs={**op.attrs, "ragc_math": precision.gemm_math, "ragc_coopmat": precision.coopmat})
        if op.op_type in GEMM_OPS
        else op
        for op in graph.ops
    ]
    return Graph(ops=ops, tensors=tensors, inputs=list(graph.inputs), outputs=list(graph.outputs), opset=graph.opset)
