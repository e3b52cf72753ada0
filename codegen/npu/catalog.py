"""The NPU kernels ragc can call: one entry per prebuilt mlir-aie design family, each an xclbin reference, never a
binary. See codegen/npu/KERNELS.md for the table of kernels and how to add one.

One xclbin serves a whole family: sizes, the elementwise op and the GEMM epilogue are runtime parameters of its
instruction sequences (the mlir-aie pattern of programming_examples/ml/scale_shift and ml/mm_activation_epilogue:
"all modes are compiled into ONE xclbin; which one runs is selected per dispatch by a runtime-parameter word").
So consecutive steps of one family share a hardware context and run as one run list; changing family (or GEMM
tiling) is a context switch. Users build each xclbin from the design folder with the `build_args` given and put
it where RAGC_XCLBIN_PATH finds it as `<root>/<device>/<design>/<xclbin>` (instruction files beside it).

Argument layout (mlir-aie python/utils/xrt.py, AIE_Application.call): kernel(opcode=3, instruction bo
(group_id 1, cacheable), instruction count in 32-bit words, data bos (host_only) on group_id 3, 4, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

KERNEL_NAME = "MLIR_AIE"
OPCODE = 3  # mlir-aie's transaction-stream opcode for NPU kernels
INSTR_GROUP_ID = 1
FIRST_DATA_GROUP_ID = 3
DEVICE_NAMES = {"xdna": "npu", "xdna1": "npu", "xdna2": "npu2"}  # mlir-aie --dev / devicename per architecture
DTYPE_BYTES = {"bfloat16": 2, "float32": 4, "int8": 1, "int32": 4}
MLIR_DTYPES = {"bfloat16": "bf16", "float32": "f32", "int8": "i8", "int32": "i32"}


@dataclass(frozen=True)
class Buffer:
    """One data argument of a kernel call: its role, element type and padded shape."""

    role: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * DTYPE_BYTES[self.dtype]


@dataclass(frozen=True)
class KernelSpec:
    """One kernel of a design family: its size parameters and the multiples each is padded to."""

    name: str  # the kernel kind, also the timing model's key
    family: str  # what one xclbin serves ("gemm", "vector", "softmax", ...)
    design: str  # mlir-aie programming example folder
    dims: tuple[str, ...]  # size parameters, in name order
    multiples: tuple[int, ...]  # each dim is padded up to a multiple of this
    pad_value: str = "0"  # value written into padding ("-inf" where padding must not win a max or sum)
    build_args: dict[str, Any] = field(default_factory=dict)

    def padded(self, sizes: tuple[int, ...], multiples: tuple[int, ...] | None = None) -> tuple[int, ...]:
        steps = multiples or self.multiples
        return tuple(max(m, math.ceil(s / m) * m) for s, m in zip(sizes, steps, strict=True))

    def reference(
        self,
        device: str,
        padded: tuple[int, ...],
        buffers: list[Buffer],
        variant: str,
        mode: str = "",
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The xclbin reference of one call: files, kernel name, argument layout. `variant` names the family's
        xclbin build (dtype, tiling), `mode` the runtime-selected op or epilogue of this call."""
        extra = dict(extra or {})
        build = {"devicename": device, **self.build_args, **extra.pop("build_args", {})}
        dims = dict(zip(self.dims, padded, strict=True))
        size = "x".join(str(v) for v in padded)
        arguments: list[dict[str, Any]] = [
            {"index": 0, "role": "opcode", "value": OPCODE},
            {"index": 1, "role": "instructions", "group_id": INSTR_GROUP_ID, "flags": "cacheable"},
            {"index": 2, "role": "instruction_count", "unit": "uint32 words"},
        ]
        for i, buf in enumerate(buffers):
            arguments.append(
                {
                    "index": FIRST_DATA_GROUP_ID + i,
                    "role": buf.role,
                    "group_id": FIRST_DATA_GROUP_ID + i,
                    "flags": "host_only",
                    "dtype": buf.dtype,
                    "shape": list(buf.shape),
                    "bytes": buf.nbytes,
                }
            )
        return {
            "kernel": self.name,
            "family": self.family,
            "design": self.design,
            "device": device,
            "kernel_name": KERNEL_NAME,
            "xclbin": f"final_{self.family}_{variant}.xclbin",
            "insts": f"insts_{self.name}_{size}{'_' + mode if mode else ''}.txt",
            "dims": dims,
            "pad_value": self.pad_value,
            "build_args": build,
            "arguments": arguments,
            **extra,
        }


# whole_array GEMM: tiling (m, k, n, columns) from the XDNA model, so its multiples come from there
MATMUL = KernelSpec("matmul", "gemm", "basic/matrix_multiplication/whole_array", ("M", "K", "N"), (1, 1, 1))
# grouped conv: G dispatches of the same GEMM design (one instruction sequence per group, one xclbin)
CONV_GROUPED = KernelSpec(
    "conv_grouped", "gemm", "basic/matrix_multiplication/whole_array", ("G", "M", "K", "N"), (1, 1, 1, 1)
)
GEMV = KernelSpec("gemv", "gemv", "basic/matrix_multiplication/matrix_vector", ("K", "N"), (64, 256))
SOFTMAX = KernelSpec("softmax", "softmax", "ml/softmax", ("R", "C"), (1, 64), pad_value="-inf")
LAYERNORM = KernelSpec("layernorm", "layernorm", "ml/layernorm", ("R", "C"), (1, 64))
RMSNORM = KernelSpec("rmsnorm", "rmsnorm", "ml/rmsnorm", ("R", "C"), (1, 64))
ATTENTION = KernelSpec("attention", "attention", "ml/mha", ("B", "H", "HKV", "SQ", "SKV", "D"), (1, 1, 1, 16, 16, 16))
DWCONV = KernelSpec("dwconv", "dwconv", "ml/mobilenet", ("N", "C", "IH", "IW", "OH", "OW", "KK"), (1, 8, 1, 1, 1, 1, 1))


VECTOR_KINDS = ("add", "mul", "relu", "gelu", "swish", "sigmoid", "tanh", "clip")


def _vector(name: str) -> KernelSpec:
    """A bf16 elementwise kernel over L elements, L padded to 1024 (32-element vectors on every tile); one
    ml/eltwise xclbin holds them all, the op picked per dispatch."""
    return KernelSpec(name, "vector", "ml/eltwise", ("L",), (1024,), build_args={"ops": ",".join(VECTOR_KINDS)})


KERNELS: dict[str, KernelSpec] = {
    spec.name: spec
    for spec in (
        MATMUL,
        CONV_GROUPED,
        GEMV,
        SOFTMAX,
        LAYERNORM,
        RMSNORM,
        ATTENTION,
        DWCONV,
        *(_vector(kind) for kind in VECTOR_KINDS),
    )
}


def device_name(arch: str) -> str:
    """mlir-aie's device name for an XDNA architecture ("xdna" -> "npu", "xdna2" -> "npu2")."""
    if arch not in DEVICE_NAMES:
        raise ValueError(f"unknown NPU arch {arch!r}: use one of {sorted(DEVICE_NAMES)}")
    return DEVICE_NAMES[arch]
