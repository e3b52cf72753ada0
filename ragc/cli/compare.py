"""Comparing a plan's outputs with onnxruntime's: per output, its largest errors and whether every element is
within tolerance, where the tolerance is the loosest of the processors that computed the output (its partition
and every partition before it, where they actually ran): fp32 for the CPU and GPU, bf16 for the NPU."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

BF16 = "npu"  # the processor that computes in bf16 (the simulator too)


@dataclass(frozen=True)
class Tolerances:
    """fp32 rtol/atol, and the NPU's bf16 rtol with its atol as a fraction of the output's largest magnitude."""

    rtol: float = 1e-4
    atol: float = 1e-5
    npu_rtol: float = 2e-2
    npu_atol: float = 1e-2

    def of(self, processors: set[str], expected: np.ndarray) -> tuple[float, float]:
        """(rtol, atol) for an output computed on `processors`."""
        if BF16 not in processors:
            return self.rtol, self.atol
        finite = np.abs(expected[np.isfinite(expected)]) if expected.dtype.kind == "f" else np.abs(expected)
        scale = float(finite.max(initial=0.0)) or 1.0
        return self.npu_rtol, self.npu_atol * scale


@dataclass
class Comparison:
    rtol: float
    atol: float
    errors: dict[str, tuple[float, float, bool]] = field(default_factory=dict)  # name -> (abs, rel, within)
    tolerances: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (rtol, atol) used

    @property
    def ok(self) -> bool:
        return all(within for _, _, within in self.errors.values())


def compare_one(actual: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> tuple[float, float, bool]:
    """(max abs error, max rel error, every element within atol + rtol * |expected|); NaN must match NaN."""
    if actual.shape != expected.shape or actual.dtype != expected.dtype:
        return float("inf"), float("inf"), False
    if actual.dtype.kind not in "fiub":
        return 0.0, 0.0, bool(np.array_equal(actual, expected))
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    same_nan = np.isnan(a) == np.isnan(e)
    diff = np.where(np.isnan(e), 0.0, np.abs(a - e))
    rel = diff / np.maximum(np.abs(e), np.finfo(np.float32).tiny)
    within = bool(np.all(same_nan) and np.all(diff <= atol + rtol * np.abs(np.nan_to_num(e))))
    return float(diff.max(initial=0)), float(np.nan_to_num(rel).max(initial=0)), within


def compare_outputs(got: dict[str, np.ndarray], want: dict[str, np.ndarray], rtol: float, atol: float) -> Comparison:
    """Every output at one tolerance."""
    result = Comparison(rtol, atol)
    for name, expected in want.items():
        result.errors[name] = compare_one(got[name], expected, rtol, atol)
        result.tolerances[name] = (rtol, atol)
    return result


def computed_on(schedule: dict[str, Any], ran_on: dict[str, str]) -> dict[str, set[str]]:
    """Plan output -> the processors its partition and every partition before it ran on (empty for a plan input
    or a constant passed through)."""
    parts = {p["id"]: p for p in schedule["partitions"]}
    writer = {o["name"]: p["id"] for p in schedule["partitions"] for o in p["outputs"]}
    memo: dict[str, set[str]] = {}

    def upstream(pid: str) -> set[str]:
        if pid not in memo:
            memo[pid] = {ran_on.get(pid, parts[pid]["device"])}
            for spec in parts[pid]["inputs"]:
                if spec["name"] in writer:
                    memo[pid] |= upstream(writer[spec["name"]])
        return memo[pid]

    return {o["name"]: upstream(writer[o["name"]]) if o["name"] in writer else set() for o in schedule["outputs"]}


def compare_plan(
    got: dict[str, np.ndarray], want: dict[str, np.ndarray], processors: dict[str, set[str]], tol: Tolerances
) -> Comparison:
    """Every output at the tolerance of the processors that computed it."""
    result = Comparison(tol.rtol, tol.atol)
    for name, expected in want.items():
        rtol, atol = tol.of(processors.get(name, set()), expected)
        result.errors[name] = compare_one(got[name], expected, rtol, atol)
        result.tolerances[name] = (rtol, atol)
    return result
