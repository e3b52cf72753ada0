"""Imports every module that registers GPU lowerings; add a new `codegen/gpu_<family>.py` here."""

from codegen.gpu.ops import conv, eltwise, gemm, index, movement, pool, reduce

__all__ = ["conv", "eltwise", "gemm", "index", "movement", "pool", "reduce"]
