"""Roofline kernel time of one op from a device's peak rates: max(compute, memory).

Peaks in a target file are published maxima that real kernels do not reach, so each family gets the share of
peak compute its kernels typically attain (dense conv/gemm well over half, depthwise conv and pooling far less);
memory-bound work reaches about 70% of the DRAM figure. Measured personalities store attained peaks instead, and
the learned model corrects the rest per family and shape.
"""

from __future__ import annotations

from typing import Any

from ragc.costmodel.features import family_of_features

COMPUTE_EFFICIENCY = {
    "conv": 0.6,
    "conv_dw": 0.15,
    "gemm": 0.6,
    "attention": 0.3,
    "elementwise": 0.5,
    "pool": 0.2,
    "softmax": 0.3,
    "norm": 0.3,
    "reduce": 0.3,
    "movement": 1.0,
    "metadata": 1.0,
}
MEMORY_EFFICIENCY = 0.7


def roofline_parts(features: dict[str, float], spec: dict[str, Any]) -> tuple[float, float]:
    """(compute ms, memory ms) of an op on a device described by `spec` (peak_gflops, peak_gbps)."""
    fam = family_of_features(features)
    compute = features["flops"] / (float(spec["peak_gflops"]) * 1e6 * COMPUTE_EFFICIENCY[fam])
    memory = (features["bytes_in"] + features["bytes_out"]) / (float(spec["peak_gbps"]) * 1e6 * MEMORY_EFFICIENCY)
    return compute, memory


def roofline_ms(features: dict[str, float], spec: dict[str, Any]) -> float:
    """Predicted kernel ms of one op (per-op and launch overheads excluded); metadata ops cost nothing."""
    if family_of_features(features) == "metadata":
        return 0.0
    return max(roofline_parts(features, spec))
