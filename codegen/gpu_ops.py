"""Imports every module that registers GPU lowerings; add a new `codegen/gpu_<family>.py` here."""

from codegen import gpu_conv, gpu_eltwise, gpu_gemm, gpu_movement, gpu_pool, gpu_reduce

__all__ = ["gpu_conv", "gpu_eltwise", "gpu_gemm", "gpu_movement", "gpu_pool", "gpu_reduce"]
