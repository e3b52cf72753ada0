"""The learned per-device op-time model.

Choice: scikit-learn gradient-boosted trees (GradientBoostingRegressor) fitted on the log of the ratio between the
measured time and the roofline time, over log-scaled op features (FLOPs, bytes, shapes, kernel params, family).
- Op times span five decades and errors matter relatively, so the target is a log.
- Trees capture the step-like efficiency changes of real kernels (cache sizes, vector blocking, 1x1 vs 3x3,
  depthwise, grouped) from a few hundred samples, without feature scaling or tuning.
- Predicting the *ratio* to the roofline, not the time, lets an op larger or smaller than anything sampled still
  scale with its FLOPs and bytes (trees stop at the edge of their data, the roofline does not): that is what
  carries the model over to models it has never seen.
- A flag marks samples timed inside whole models (recorded runs) apart from one-op micro-benchmarks; predictions
  are asked for inside a model, so run timings correct the profile wherever they exist.
- Samples weigh by the square root of their time: the ops that make most of a model's latency count more,
  without letting the few largest decide alone.
- A device may add features of its own: the GPU's say which tile ragc's codegen picks for a conv or gemm, how much
  of the tiled work is padding and how many workgroups run (costmodel.gpu_features).
Deterministic (fixed seed).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.ensemble import GradientBoostingRegressor

from ragc.costmodel.features import FAMILIES, NUMERIC_KEYS, log_features
from ragc.costmodel.roofline import roofline_ms, roofline_parts

MIN_SAMPLES = 12  # fewer than this and the device falls back to the roofline


IN_CONTEXT = ("context", "run", "eval")  # sample sources timed inside whole models, not alone


Extra = Callable[[dict[str, float]], list[float]]  # a device's own features of an op


def design_row(
    features: dict[str, float], spec: dict[str, Any], in_context: bool = True, extra: Extra | None = None
) -> list[float]:
    """Model inputs: log features, family flags, roofline terms, whether the time was taken inside a model, and
    the device's own features."""
    compute, memory = roofline_parts(features, spec)
    roof = roofline_ms(features, spec)
    fams = [features.get(f"fam_{f}", 0.0) for f in FAMILIES]
    return (
        log_features(features, NUMERIC_KEYS)
        + fams
        + [math.log(max(roof, 1e-6)), math.log1p(compute * 1e3), math.log1p(memory * 1e3), float(in_context)]
        + (extra(features) if extra else [])
    )


class DeviceModel:
    """Predicts op ms on one device from its samples (each {"features", "ms"}) and its peak-rate spec."""

    def __init__(self, samples: list[dict[str, Any]], spec: dict[str, Any], extra: Extra | None = None):
        self.spec, self.extra = spec, extra
        kept = [s for s in samples if roofline_ms(s["features"], spec) > 0]
        x = np.array([design_row(s["features"], spec, s.get("source") in IN_CONTEXT, extra) for s in kept])
        y = np.array([math.log(s["ms"] / roofline_ms(s["features"], spec)) for s in kept])
        weights = np.sqrt([s["ms"] for s in kept])
        self.regressor = GradientBoostingRegressor(
            n_estimators=600, max_depth=5, learning_rate=0.03, subsample=0.8, min_samples_leaf=3, random_state=0
        )
        self.regressor.fit(x, y, sample_weight=weights)

    def predict(self, features: list[dict[str, float]]) -> list[float]:
        """Ms per op, launch overhead excluded; metadata ops cost 0."""
        roofs = np.array([roofline_ms(f, self.spec) for f in features])
        out = np.zeros(len(features))
        live = roofs > 0
        if live.any():
            rows = [design_row(f, self.spec, True, self.extra) for f, keep in zip(features, live, strict=True) if keep]
            x = np.array(rows)
            out[live] = roofs[live] * np.exp(self.regressor.predict(x))
        return [float(v) for v in out]
