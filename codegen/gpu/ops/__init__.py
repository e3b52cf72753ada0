"""Imports every module that registers GPU lowerings; add a new `codegen/gpu/ops/<family>.py` here."""

from codegen.gpu.ops import (
    attention,
    conv,
    einsum,
    eltwise,
    gemm,
    generate,
    index,
    movement,
    pool,
    reduce,
    scan,
    scatter,
)

__all__ = [
    "attention",
    "conv",
    "einsum",
    "eltwise",
    "gemm",
    "generate",
    "index",
    "movement",
    "pool",
    "reduce",
    "scan",
    "scatter",
]
