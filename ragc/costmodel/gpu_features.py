"""What ragc's GPU codegen will make of a conv or gemm, as cost-model features: which GEMM tile it picks, how much
of the tiled work is padding, into how many K pieces it splits and how many workgroups it launches, or whether a
conv runs as a direct kernel.

Kernel efficiency on a GPU steps with these (a 100-wide matrix in 64-wide tiles wastes a third of its work; too few
workgroups leave the GPU idle), and op features alone do not show them. The policy is codegen's: this module only
reads it (codegen.gpu.ops.gemm.gemm_plan, codegen.gpu.ops.conv.GEMM_MIN_CHANNELS).
"""

from __future__ import annotations

import math

from codegen.gpu.ops.conv import GEMM_MIN_CHANNELS
from codegen.gpu.ops.gemm import gemm_plan
from ragc.costmodel.features import family_of_features

KEYS = ("gpu_direct", "gpu_tile_m", "gpu_tile_n", "gpu_padding", "gpu_splits", "gpu_workgroups")


def gemm_shape(features: dict[str, float]) -> tuple[int, int, int, int] | None:
    """(m, n, k, batch) of the GEMM a conv or gemm op lowers to, None for other ops."""
    family = family_of_features(features)
    if family == "gemm":
        return int(features["gemm_m"]), int(features["gemm_n"]), int(features["gemm_k"]), int(features["batch"])
    if family in ("conv", "conv_dw"):
        groups, images = max(1, int(features["groups"])), max(1, int(features["N"]))
        m = int(features["K"]) // groups
        n = int(features["out_elems"]) // max(1, images * int(features["K"]))
        k = int(features["C"]) // groups * int(features["kernel"])
        return m, n, k, images * groups
    return None


def gpu_tile_features(features: dict[str, float]) -> list[float]:
    """KEYS, in order: 1 for a direct conv kernel; the tile's rows and columns; the tiled work's share of padding;
    the split-K pieces; log1p of the workgroup count (splits included). All 0 for ops that are no GEMM."""
    shape = gemm_shape(features)
    if shape is None:
        return [0.0] * len(KEYS)
    m, n, k, batch = shape
    conv = family_of_features(features) != "gemm"
    if conv and m < GEMM_MIN_CHANNELS:
        return [1.0, 0.0, 0.0, 0.0, 1.0, math.log1p(batch * m * n / 256)]
    plan = gemm_plan(m, n, k, batch, conv=conv)
    tile = plan.tile
    rows, cols, depth = (-(-m // tile["BM"])), (-(-n // tile["BN"])), (-(-k // tile["BK"]))
    padded = rows * tile["BM"] * cols * tile["BN"] * depth * tile["BK"]
    groups = batch * rows * cols * plan.splits
    return [0.0, float(tile["BM"]), float(tile["BN"]), 1.0 - m * n * k / padded, float(plan.splits), math.log1p(groups)]
