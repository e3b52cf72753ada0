"""The one XDNA NPU timing model: the compiler's cost model uses it, and codegen writes the times it gives into each
NPU program, which is what the simulator (runtime_min/backends/npu_sim.py) replays.

Timing is a model built from published figures (tiles, MACs per cycle, clock, DMA bandwidth) and one measured
number (sustained bf16 GEMM TFLOPS); every time it gives is simulated, never measured.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ragc.errors import PersonalityError

# XDNA2 (Strix Point, e.g. Ryzen AI 9 HX 370): 32 AIE-ML tiles (8 columns x 4 rows), 512 int8 / 256 bf16 MACs per
# tile per cycle; the same figures as ragc/targets/ryzen-ai-9-hx-370.json, used when a partition carries none.
XDNA2_DEFAULTS: dict[str, Any] = {
    "arch": "xdna2",
    "tiles": 32,
    "macs_per_cycle_per_tile": {"bf16": 256, "int8": 512},
    "clock_ghz": 1.8,
    "dma_gbps": 60.0,
    "dispatch_us": 50.0,
    "host_sync_ms": 0.5,
    "cold_start_ms": 120.0,
    "measured_bf16_gemm_tflops": 14.7,
    "idle_power_down_ms": 200.0,  # not in target files: how long the array idles before it power-gates
}

ARCHS = ("xdna", "xdna1", "xdna2")

# Elements one tile's vector unit finishes per cycle, per elementwise kernel (bf16, 512-bit vectors = 32 lanes;
# transcendental kernels use polynomial or lookup-table approximations that cost several vector ops each).
ELEMENTS_PER_CYCLE = {
    "add": 32.0,
    "mul": 32.0,
    "relu": 32.0,
    "sigmoid": 8.0,
    "tanh": 8.0,
    "gelu": 6.0,
    "swish": 6.0,
    "hardswish": 16.0,
    "softmax": 4.0,
}
GEMM_KINDS = ("matmul",)
KERNEL_KINDS = GEMM_KINDS + tuple(ELEMENTS_PER_CYCLE)
BF16 = 2  # bytes


@dataclass(frozen=True)
class XdnaTiming:
    """Simulated time of NPU kernels from the `npu` section of a target file (missing keys: XDNA2 defaults)."""

    arch: str
    tiles: int
    macs_per_cycle_per_tile: dict[str, int]
    clock_ghz: float
    dma_gbps: float
    dispatch_us: float
    host_sync_ms: float
    cold_start_ms: float
    measured_bf16_gemm_tflops: float
    idle_power_down_ms: float

    @classmethod
    def from_params(cls, params: dict[str, Any] | None = None) -> XdnaTiming:
        merged = {**XDNA2_DEFAULTS, **(params or {})}
        names = [f.name for f in fields(cls)]
        try:
            timing = cls(**{n: merged[n] for n in names})
        except (KeyError, TypeError) as exc:
            raise PersonalityError(
                f"NPU timing parameters are malformed ({exc}): give the target's npu section"
            ) from exc
        for name in names:
            if name != "arch" and name != "macs_per_cycle_per_tile" and not float(getattr(timing, name)) >= 0:
                raise PersonalityError(f"NPU timing parameter {name}={getattr(timing, name)!r} must be >= 0")
        if timing.arch not in ARCHS:
            raise PersonalityError(f"unknown NPU arch {timing.arch!r}: use one of {', '.join(ARCHS)}")
        return timing

    def peak_macs_per_s(self, dtype: str = "bf16") -> float:
        if dtype not in self.macs_per_cycle_per_tile:
            raise ValueError(f"no MAC rate for dtype {dtype!r}: use one of {sorted(self.macs_per_cycle_per_tile)}")
        return self.tiles * self.macs_per_cycle_per_tile[dtype] * self.clock_ghz * 1e9

    @property
    def efficiency(self) -> float:
        """Fraction of peak a large GEMM sustains, calibrated on the measured bf16 GEMM TFLOPS."""
        return min(1.0, self.measured_bf16_gemm_tflops * 1e12 / (2 * self.peak_macs_per_s("bf16")))

    def compute_ms(self, kind: str, m: int, k: int = 1, n: int = 1, *, dtype: str = "bf16") -> float:
        """Time the tiles spend computing, with DMA fully overlapped."""
        if kind in GEMM_KINDS:
            return m * k * n / (self.peak_macs_per_s(dtype) * self.efficiency) * 1e3
        if kind in ELEMENTS_PER_CYCLE:
            per_s = self.tiles * ELEMENTS_PER_CYCLE[kind] * self.clock_ghz * 1e9 * self.efficiency
            return m * k * n / per_s * 1e3
        raise ValueError(f"no timing model for NPU kernel {kind!r}: use one of {', '.join(KERNEL_KINDS)}")

    def dma_bytes(self, kind: str, m: int, k: int = 1, n: int = 1) -> int:
        """Bytes moved between host memory and the array: bf16 operands in, fp32 GEMM or bf16 elementwise out."""
        if kind in GEMM_KINDS:
            return (m * k + k * n) * BF16 + m * n * 4
        operands = 2 if kind in ("add", "mul") else 1
        return (operands + 1) * m * k * n * BF16

    def kernel_ms(
        self, kind: str, m: int, k: int = 1, n: int = 1, *, dtype: str = "bf16", idle_ms: float = 0.0
    ) -> float:
        """One kernel invocation: dispatch + max(compute, DMA) (double-buffered), plus the cold start after idle.

        kind: "matmul" (m x k times k x n) or an elementwise kernel over m*k*n elements; idle_ms: how long the NPU
        sat idle before this call (a power-gated array pays cold_start_ms to wake)."""
        dma_ms = self.dma_bytes(kind, m, k, n) / (self.dma_gbps * 1e9) * 1e3
        busy = max(self.compute_ms(kind, m, k, n, dtype=dtype), dma_ms)
        return self.dispatch_us / 1e3 + busy + self.cold_penalty_ms(idle_ms)

    def cold_penalty_ms(self, idle_ms: float) -> float:
        return self.cold_start_ms if idle_ms >= self.idle_power_down_ms else 0.0

    def launch(self) -> dict[str, float]:
        """What one partition launch costs besides its kernels, as the simulator reads it from the program."""
        return {
            "host_sync_ms": self.host_sync_ms,
            "cold_start_ms": self.cold_start_ms,
            "idle_power_down_ms": self.idle_power_down_ms,
        }
