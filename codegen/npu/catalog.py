"""The NPU kernels ragc can call: one entry per prebuilt mlir-aie design, each an xclbin reference, never a binary.

Names follow AMD's mlir-aie / IRON programming examples (programming_examples/basic/matrix_multiplication/
makefile-common builds `build/final_${M}x${K}x${N}.xclbin` and `build/insts_${M}x${K}x${N}.txt` and runs them
with `-k MLIR_AIE`; programming_examples/ml/{eltwise_add,eltwise_mul,relu,gelu,silu,softmax} are the bf16
vector and matrix designs). An xclbin is built for one padded size, so a reference names the size it needs;
users build it with the design's Makefile and the `build_args` given, and put it where RAGC_XCLBIN_PATH finds
it as `<root>/<device>/<design>/<xclbin>` (instruction file beside it).

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
DTYPE_BYTES = {"bfloat16": 2, "float32": 4}


@dataclass(frozen=True)
class KernelSpec:
    """One prebuilt design: its size parameters, the multiples each must be padded to, and its data buffers."""

    name: str  # the kernel kind, also the timing model's key
    design: str  # mlir-aie programming example folder
    dims: tuple[str, ...]  # size parameters baked into the xclbin, in name order
    multiples: tuple[int, ...]  # each dim is padded up to a multiple of this (tile constraint)
    buffers: tuple[tuple[str, str, tuple[str, ...]], ...]  # (role, dtype, shape in dims) in group-id order
    pad_value: str = "0"  # value written into padding ("-inf" where padding must not win a max or sum)
    build_args: dict[str, Any] = field(default_factory=dict)

    def padded(self, sizes: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(max(m, math.ceil(s / m) * m) for s, m in zip(sizes, self.multiples, strict=True))

    def reference(self, device: str, padded: tuple[int, ...]) -> dict[str, Any]:
        """The xclbin reference for one padded size: files, kernel name and the full argument layout."""
        dims = dict(zip(self.dims, padded, strict=True))
        size = "x".join(str(v) for v in padded)
        suffix = f"{self.build_args['op']}_{size}" if "op" in self.build_args else size
        arguments: list[dict[str, Any]] = [
            {"index": 0, "role": "opcode", "value": OPCODE},
            {"index": 1, "role": "instructions", "group_id": INSTR_GROUP_ID, "flags": "cacheable"},
            {"index": 2, "role": "instruction_count", "unit": "uint32 words"},
        ]
        for i, (role, dtype, shape_dims) in enumerate(self.buffers):
            shape = [dims[d] for d in shape_dims]
            arguments.append(
                {
                    "index": FIRST_DATA_GROUP_ID + i,
                    "role": role,
                    "group_id": FIRST_DATA_GROUP_ID + i,
                    "flags": "host_only",
                    "dtype": dtype,
                    "shape": shape,
                    "bytes": math.prod(shape) * DTYPE_BYTES[dtype],
                }
            )
        build = {"devicename": device, **dict(zip(self.dims, padded, strict=True)), **self.build_args}
        return {
            "kernel": self.name,
            "design": self.design,
            "device": device,
            "kernel_name": KERNEL_NAME,
            "xclbin": f"final_{suffix}.xclbin",
            "insts": f"insts_{suffix}.txt",
            "dims": dims,
            "pad_value": self.pad_value,
            "build_args": build,
            "arguments": arguments,
        }


def _vector(name: str, design: str, operands: int = 1, **build: Any) -> KernelSpec:
    """A bf16 vector design over L elements; L padded to 1024 (4 cores x 256-element tiles)."""
    ins = tuple((role, "bfloat16", ("L",)) for role in ("A", "B")[:operands])
    return KernelSpec(name, design, ("L",), (1024,), ins + (("C", "bfloat16", ("L",)),), build_args=build)


# whole_array GEMM with m=16, k=64, n=16 per core on 4 columns: M and N pad to 64, K to 64; bf16 in, fp32 out.
MATMUL = KernelSpec(
    "matmul",
    "basic/matrix_multiplication/whole_array",
    ("M", "K", "N"),
    (64, 64, 64),
    (("A", "bfloat16", ("M", "K")), ("B", "bfloat16", ("K", "N")), ("C", "float32", ("M", "N"))),
    build_args={"m": 16, "k": 64, "n": 16, "n_aie_cols": 4, "dtype_in": "bf16", "dtype_out": "f32"},
)
SOFTMAX = KernelSpec(
    "softmax",
    "ml/softmax",
    ("R", "C"),
    (1, 64),
    (("A", "bfloat16", ("R", "C")), ("C", "bfloat16", ("R", "C"))),
    pad_value="-inf",
)
KERNELS: dict[str, KernelSpec] = {
    spec.name: spec
    for spec in (
        MATMUL,
        SOFTMAX,
        _vector("add", "ml/eltwise_add", operands=2),
        _vector("mul", "ml/eltwise_mul", operands=2),
        _vector("relu", "ml/relu"),
        _vector("gelu", "ml/gelu", approximation="tanh"),
        _vector("swish", "ml/silu"),
        _vector("sigmoid", "ml/eltwise_unary", op="sigmoid"),
        _vector("tanh", "ml/eltwise_unary", op="tanh"),
    )
}


def device_name(arch: str) -> str:
    """mlir-aie's device name for an XDNA architecture ("xdna" -> "npu", "xdna2" -> "npu2")."""
    if arch not in DEVICE_NAMES:
        raise ValueError(f"unknown NPU arch {arch!r}: use one of {sorted(DEVICE_NAMES)}")
    return DEVICE_NAMES[arch]
