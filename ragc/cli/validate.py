"""Compare a plan against onnxruntime running the original model, on the same fresh random inputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ragc.cli.report import random_feeds


@dataclass
class Comparison:
    rtol: float
    atol: float
    errors: dict[str, tuple[float, float, bool]] = field(default_factory=dict)  # name -> (abs, rel, within)

    @property
    def ok(self) -> bool:
        return all(within for _, _, within in self.errors.values())

    def lines(self) -> list[str]:
        rows = [
            f"{name}: max abs err {abs_err:.3g}, max rel err {rel_err:.3g} -> {'ok' if within else 'MISMATCH'}"
            for name, (abs_err, rel_err, within) in self.errors.items()
        ]
        verdict = "PASS" if self.ok else "FAIL"
        return [*rows, f"{verdict} (rtol {self.rtol:g}, atol {self.atol:g})"]


def compare_outputs(got: dict[str, np.ndarray], want: dict[str, np.ndarray], rtol: float, atol: float) -> Comparison:
    result = Comparison(rtol, atol)
    for name, expected in want.items():
        actual = got[name]
        if actual.shape != expected.shape or actual.dtype != expected.dtype:
            result.errors[name] = (float("inf"), float("inf"), False)
            continue
        a, e = actual.astype(np.float64), expected.astype(np.float64)
        diff = np.abs(a - e)
        rel = diff / np.maximum(np.abs(e), np.finfo(np.float32).tiny)
        within = bool(np.all(diff <= atol + rtol * np.abs(e)))
        result.errors[name] = (float(diff.max(initial=0)), float(rel.max(initial=0)), within)
    return result


def compare_with_onnxruntime(
    plan_dir: str | Path, model: str | Path, rtol: float, atol: float, seed: int = 0
) -> Comparison:
    import onnxruntime

    import runtime_min

    plan = runtime_min.load(plan_dir)
    feeds = random_feeds(plan.inputs, seed)
    reference = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [o.name for o in reference.get_outputs()]
    want = dict(zip(names, reference.run(names, feeds), strict=True))
    return compare_outputs(plan.run(feeds), want, rtol, atol)
