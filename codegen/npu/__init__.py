"""The NPU code generator: which ops the XDNA NPU takes, and partitions as xclbin references plus bf16 weights."""

from codegen.errors import NpuCodegenError
from codegen.npu.emit import FORMAT, emit, kernel_calls, unsupported_reason

__all__ = ["FORMAT", "NpuCodegenError", "emit", "kernel_calls", "unsupported_reason"]
