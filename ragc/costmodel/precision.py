"""Reduced precision in the cost model: an op's fp32 prediction scaled by what its 16-bit kernel saves.

The saving is read off the roofline: the op's features with every byte moved times STORAGE_BYTES (a partition's
inputs and outputs keep the model's dtypes, so this slightly overstates it for ops at a partition's edge) and,
for conv/gemm tiles that compute in float16 or on cooperative matrices, its flops divided by the device's speedup
over fp32. The speedup is the personality's `gemm_speedup` ({"fp16": x, "coopmat": y} in the GPU's entry, from a
target file or a profile that measured it), else DEFAULT_SPEEDUP. The learned fp32 prediction is multiplied by
roofline(reduced) / roofline(fp32), so a measured fp32 correction carries over.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ragc.costmodel.features import family_of_features
from ragc.costmodel.roofline import roofline_ms

if TYPE_CHECKING:
    from codegen.gpu.precision import Precision

STORAGE_BYTES = {"float32": 1.0, "float16": 0.5, "bfloat16": 0.5}
DEFAULT_SPEEDUP = {"fp16": 2.0, "coopmat": 4.0}  # packed fp16 FMA; matrix cores (890M WMMA ~2x, H200 ~15x)
TILE_FAMILIES = frozenset({"conv", "gemm"})


def gemm_speedup(spec: dict[str, Any], precision: Precision) -> float:
    """How much faster than fp32 the conv/gemm tiles of `precision` compute on the device `spec` describes."""
    kind = "coopmat" if precision.coopmat else "fp16" if precision.gemm_math == "float16" else None
    if kind is None:
        return 1.0
    return float(spec.get("gemm_speedup", {}).get(kind, DEFAULT_SPEEDUP[kind]))


def reduced_features(features: dict[str, float], spec: dict[str, Any], precision: Precision) -> dict[str, float]:
    """The features the roofline sees for the op's kernel in `precision`."""
    moved = STORAGE_BYTES[precision.storage]
    out = {**features, "bytes_in": features["bytes_in"] * moved, "bytes_out": features["bytes_out"] * moved}
    if family_of_features(features) in TILE_FAMILIES:
        out["flops"] = features["flops"] / gemm_speedup(spec, precision)
    return out


def precision_factor(features: dict[str, float], spec: dict[str, Any], precision: Precision) -> float:
    """Kernel ms in `precision` over kernel ms in fp32 for one op (1 for fp32 and ops the roofline prices at 0)."""
    if not precision.reduced:
        return 1.0
    fp32 = roofline_ms(features, spec)
    return roofline_ms(reduced_features(features, spec, precision), spec) / fp32 if fp32 > 0 else 1.0
