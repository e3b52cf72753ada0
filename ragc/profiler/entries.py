"""A device's entry in a personality: its attained peak rates, overheads, memory and samples."""

from __future__ import annotations

from typing import Any

from ragc.costmodel.features import family_of_features


def peak_rates(samples: list[dict[str, Any]]) -> tuple[float, float]:
    """(best GFLOP/s over conv and gemm samples, best GB/s over memory-bound samples)."""
    gflops = [
        s["features"]["flops"] / s["ms"] / 1e6 for s in samples if family_of_features(s["features"]) in ("conv", "gemm")
    ]
    gbps = [
        (s["features"]["bytes_in"] + s["features"]["bytes_out"]) / s["ms"] / 1e6
        for s in samples
        if family_of_features(s["features"]) == "elementwise"
    ]
    return max(gflops, default=1.0), max(gbps, default=1.0)


def device_entry(
    name: str,
    samples: list[dict[str, Any]],
    dispatch_ms: float,
    op_overhead_ms: float,
    memory_bytes: int,
    **extra: float,
) -> dict[str, Any]:
    gflops, gbps = peak_rates(samples)
    return {
        "name": name,
        "peak_gflops": gflops,
        "peak_gbps": gbps,
        "dispatch_ms": dispatch_ms,
        "op_overhead_ms": op_overhead_ms,
        "memory_bytes": memory_bytes,
        "samples": samples,
        **extra,
    }
