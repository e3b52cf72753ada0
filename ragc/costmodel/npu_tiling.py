"""How each NPU kernel maps onto the XDNA array, and what that costs in array time.

GEMM (the mlir-aie whole_array design): the compute tiles form `rows x columns`; each core multiplies an m x k
block of A by a k x n block of B per call, accumulating C (m x n) over K / k calls; A is broadcast along a row of
cores, B along a column, so one pass of the array produces a (rows*m) x (columns*n) block of C. A call is bound by
the MAC rate (plus a fixed cost per 2x2 accumulator block, the microkernel's load/store of C) or by the two 32-bit
input streams of a core; the whole GEMM is also bound by DDR traffic, A read once per column block of C and B once
per row block (once in all when B fits the memtiles). The tiling is searched under the L1 budget: A and B double
buffered, C double buffered (or single, draining between blocks).

Vector kernels (elementwise, norms, softmax, depthwise convolution) stream through every tile; attention is a
flash-attention tiling of Q blocks over K/V blocks on the matrix unit with the softmax on the vector unit.
Every figure comes from an XdnaArray (the target file's npu section); times are seconds, simulated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ragc.targets import npu_dram_bytes_per_s, npu_peak_macs_per_s

STACK_BYTES = 1024  # mlir-aie's default core stack, taken out of each tile's L1 data memory
TILE_STEP = 16  # candidate block sizes are multiples of this (and of the mmul intrinsic)
MAX_BLOCK = 256
DTYPE_BYTES = {"bf16": 2, "int8": 1}


@dataclass(frozen=True)
class XdnaArray:
    """The array's architecture figures (see ragc/targets/*.json, npu section, for each one's source)."""

    arch: str
    columns: int
    rows: int
    clock_ghz: float
    macs_per_cycle: dict[str, int]  # per compute tile, per input dtype (matrix unit)
    mmul: dict[str, list[int]]  # the r x s x t shape of the matrix intrinsic, per dtype
    vector_lanes: dict[str, int]  # elementwise lanes per cycle per tile, per dtype
    l1_bytes: int
    memtile_bytes: int
    stream_bytes_per_cycle: int  # one DMA channel (stream) into or out of a tile
    shim_channels: int  # DMA channels into the array per column (and as many out)
    ddr_gbps: float  # DRAM bandwidth the array's shim DMAs reach, reads and writes together
    accumulator_block_cycles: float  # microkernel cycles per 2x2 accumulator block per call, not overlapped

    @property
    def tiles(self) -> int:
        return self.columns * self.rows

    def dram_bytes_per_s(self) -> float:
        """DDR bandwidth, capped by what the shim streams carry in one direction."""
        return npu_dram_bytes_per_s(self.__dict__)

    def peak_macs_per_s(self, dtype: str) -> float:
        return npu_peak_macs_per_s(self.__dict__, dtype)


@dataclass(frozen=True)
class GemmTiling:
    """One whole-array GEMM design: per-core block m x k x n over rows x cols cores, C buffered c_depth deep."""

    m: int
    k: int
    n: int
    rows: int
    cols: int
    c_depth: int

    @property
    def multiples(self) -> tuple[int, int, int]:
        """What M, K and N are padded to multiples of."""
        return self.rows * self.m, self.k, self.cols * self.n

    def build_args(self) -> dict[str, Any]:
        return {"m": self.m, "k": self.k, "n": self.n, "n_aie_cols": self.cols}


def _blocks(limit: int, unit: int) -> np.ndarray:
    step = math.lcm(TILE_STEP, unit)
    return np.arange(step, limit + 1, step)


def gemm_candidates(array: XdnaArray, dtype: str, out_bytes: int) -> list[GemmTiling]:
    """The tiling menu: for every per-core m x n block and column count (the whole_array design's n_aie_cols:
    all columns, half, ... one), the k and C depth that fit L1 and run a large GEMM fastest."""
    r, s, t = array.mmul[dtype]
    bi = DTYPE_BYTES[dtype]
    budget = array.l1_bytes - STACK_BYTES
    menu = []
    columns = [c for c in (array.columns >> i for i in range(4)) if c >= 1]
    for cols in dict.fromkeys(columns):
        for m in _blocks(MAX_BLOCK, 2 * r):
            for n in _blocks(MAX_BLOCK, 2 * t):
                best = None
                for k in _blocks(MAX_BLOCK, s):
                    for depth in (2, 1):
                        if 2 * (m * k + k * n) * bi + depth * m * n * out_bytes > budget:
                            continue
                        tiling = GemmTiling(int(m), int(k), int(n), array.rows, cols, depth)
                        seconds = gemm_seconds(array, tiling, 4096, 4096, 4096, dtype, out_bytes)
                        if best is None or seconds < best[0]:
                            best = (seconds, tiling)
                if best is not None:
                    menu.append(best[1])
    return menu


def gemm_seconds(
    array: XdnaArray,
    tiling: GemmTiling,
    m_size: int,
    k_size: int,
    n_size: int,
    dtype: str,
    out_bytes: int,
    extra_ddr_bytes: int = 0,
    batch: int = 1,
) -> float:
    """Array time of `batch` GEMMs of padded size M x K x N on this tiling (the larger of compute and DDR)."""
    r, s, t = array.mmul[dtype]
    bi, sb = DTYPE_BYTES[dtype], array.stream_bytes_per_cycle
    m, k, n = tiling.m, tiling.k, tiling.n
    compute = m * k * n / array.macs_per_cycle[dtype] + array.accumulator_block_cycles * (m * n) / (4 * r * t)
    call = max(compute, m * k * bi / sb, k * n * bi / sb)
    drain = m * n * out_bytes / sb
    row_blocks, col_blocks = m_size // tiling.multiples[0], n_size // tiling.multiples[2]
    per_block = (k_size // k) * call + (drain if tiling.c_depth == 1 else 0.0)
    array_s = batch * row_blocks * col_blocks * max(per_block, drain) / (array.clock_ghz * 1e9)
    b_bytes = k_size * n_size * bi
    b_reads = 1 if b_bytes <= array.columns * array.memtile_bytes // 2 else row_blocks
    ddr = batch * (m_size * k_size * bi * col_blocks + b_bytes * b_reads + m_size * n_size * out_bytes)
    ddr_s = (ddr + extra_ddr_bytes) / array.dram_bytes_per_s()
    fill_s = (call + (m * k + k * n) * bi / sb) / (array.clock_ghz * 1e9)
    return max(array_s, ddr_s) + fill_s


def best_gemm(
    array: XdnaArray,
    menu: list[GemmTiling],
    sizes: tuple[int, int, int],
    dtype: str,
    out_bytes: int,
    batch: int = 1,
    keep: tuple[GemmTiling, float] | None = None,
) -> tuple[GemmTiling, tuple[int, int, int]]:
    """The menu tiling that runs `batch` GEMMs of logical M x K x N soonest, and the sizes it pads them to.
    `keep` = (the tiling already loaded, seconds a switch away from it costs): it stays unless another is faster
    by more than the switch."""
    best = None
    for tiling in menu:
        padded = pad_to(sizes, tiling.multiples)
        seconds = gemm_seconds(array, tiling, *padded, dtype, out_bytes, batch=batch)
        if keep is not None and tiling != keep[0]:
            seconds += keep[1]
        if best is None or seconds < best[0]:
            best = (seconds, tiling, padded)
    assert best is not None, "the GEMM tiling menu is empty"
    return best[1], best[2]


def pad_to(sizes: tuple[int, ...], multiples: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(max(m, -(-s // m) * m) for s, m in zip(sizes, multiples, strict=True))


def gemv_seconds(array: XdnaArray, k_size: int, n_size: int, dtype: str, out_bytes: int) -> float:
    """y[1, N] = x[1, K] @ W[K, N] (the matrix_vector design): each core takes a slice of W's columns, the vector
    broadcast; bound by streaming W from DDR or by the vector MACs."""
    bi = DTYPE_BYTES[dtype]
    compute_s = k_size * n_size / (array.tiles * array.vector_lanes[dtype] * array.clock_ghz * 1e9)
    ddr_s = (k_size * n_size * bi + k_size * bi + n_size * out_bytes) / array.dram_bytes_per_s()
    return max(compute_s, ddr_s)


def vector_seconds(array: XdnaArray, elements: int, inputs: int, ops_per_element: float, passes: int = 1) -> float:
    """A bf16 kernel over `elements` outputs reading `inputs` same-sized operands, spread over every tile; each input
    and the output move on their own stream; `passes` reads of the input from DDR (norms whose rows overflow L1)."""
    per_tile = elements / array.tiles
    stream_cycles = per_tile * DTYPE_BYTES["bf16"] / array.stream_bytes_per_cycle
    compute_cycles = per_tile * ops_per_element / array.vector_lanes["bf16"]
    array_s = max(stream_cycles, compute_cycles) / (array.clock_ghz * 1e9)
    ddr_s = elements * DTYPE_BYTES["bf16"] * (inputs * passes + 1) / array.dram_bytes_per_s()
    return max(array_s, ddr_s)


def rows_passes(array: XdnaArray, cols: int) -> int:
    """DDR passes a row-wise kernel (softmax, norm) makes: one when a row, its output and statistics fit a quarter
    of L1 (double-buffered in and out), else two (statistics first, then the normalised values)."""
    return 1 if 4 * cols * DTYPE_BYTES["bf16"] <= array.l1_bytes - STACK_BYTES else 2


def attention_seconds(
    array: XdnaArray, batch: int, heads: int, kv_heads: int, sq: int, skv: int, dim: int, causal: bool
) -> float:
    """Fused attention: per head, Q in blocks of bq rows (one per core of a column, heads across columns), K and V
    streamed in bk-row blocks per Q block; QK^T and PV on the matrix unit, exp/max/sum on the vector unit."""
    bq, bk = attention_blocks(array, dim)
    share = (1 + 1 / max(sq // bq, 1)) / 2 if causal else 1.0  # causal: about half the K blocks per Q block
    macs = 2 * batch * heads * sq * skv * dim * share
    r, _, t = array.mmul["bf16"]
    per_call = 2 * bq * bk * dim / array.macs_per_cycle["bf16"]
    per_call += 2 * array.accumulator_block_cycles * (bq * max(bk, dim)) / (4 * r * t)
    calls = macs / (2 * bq * bk * dim)
    softmax_cycles = calls * bq * bk * SOFTMAX_OPS / array.vector_lanes["bf16"]
    array_s = (calls * per_call + softmax_cycles) / (array.tiles * array.clock_ghz * 1e9)
    q_bytes = batch * heads * sq * dim * DTYPE_BYTES["bf16"]
    kv_bytes = 2 * batch * kv_heads * skv * dim * DTYPE_BYTES["bf16"]
    rereads = max(1, -(-sq // (bq * array.rows)))
    ddr_s = (2 * q_bytes + kv_bytes * rereads * share) / array.dram_bytes_per_s()
    return max(array_s, ddr_s)


def attention_blocks(array: XdnaArray, dim: int) -> tuple[int, int]:
    """(bq, bk): the largest power-of-two Q and K/V blocks whose Q, double-buffered K and V, fp32 scores and fp32
    output accumulator fit one core's L1."""
    budget = array.l1_bytes - STACK_BYTES
    for bq, bk in ((128, 128), (64, 128), (64, 64), (32, 64), (32, 32), (16, 32), (16, 16)):
        need = bq * dim * 2 + 2 * 2 * bk * dim * 2 + bq * bk * 4 + bq * dim * 4
        if need <= budget:
            return bq, bk
    return 16, 16


def dwconv_seconds(array: XdnaArray, outputs: int, inputs: int, taps: int) -> float:
    """Depthwise convolution on the vector unit: one MAC per tap per output, channels spread over the tiles."""
    per_tile = outputs / array.tiles
    compute_cycles = per_tile * taps / array.vector_lanes["bf16"]
    stream_cycles = max(inputs, outputs) / array.tiles * DTYPE_BYTES["bf16"] / array.stream_bytes_per_cycle
    array_s = max(compute_cycles, stream_cycles) / (array.clock_ghz * 1e9)
    ddr_s = (inputs + outputs) * DTYPE_BYTES["bf16"] / array.dram_bytes_per_s()
    return max(array_s, ddr_s)


SOFTMAX_OPS = 6.0  # vector ops per score: max, subtract, exp (LUT + interpolation, ~2), sum, scale
