"""The NPU code generator: which ops the XDNA NPU takes, and partitions as xclbin references plus packed weights."""

from codegen.errors import NpuCodegenError
from codegen.npu.emit import FORMAT, emit, plan, plan_ops, segments, unsupported_reason

__all__ = ["FORMAT", "NpuCodegenError", "emit", "plan", "plan_ops", "segments", "unsupported_reason"]
