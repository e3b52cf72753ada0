"""Test helpers for whole models on the GPU: compile GPU-first with ragc.compile, run with runtime_min, compare
with onnxruntime running the original model (contrib ops natively)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from gpu_harness import backend

import runtime_min
from ragc.pipeline import compile_model


def ort_outputs(model: str | Path | onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)


def run_gpu_first(path: str | Path, out_dir: Path, feeds: dict[str, np.ndarray]) -> tuple[list[np.ndarray], list[str]]:
    """Compile with every op the GPU runs on the GPU; assert that is all of them; run once under runtime_min.
    Returns the outputs in model order and the op types of the plan."""
    backend()  # skips where no Vulkan device exists at all
    shapes = {name: tuple(x.shape) for name, x in feeds.items()}
    result = compile_model(path, out_dir, devices="gpu", shapes=shapes, solver="greedy")
    cpu = [p.id for p in result.partitions if p.device != "gpu"]
    assert not cpu, f"CPU partitions {cpu} in a GPU-first plan of {Path(path).name}"
    plan = runtime_min.load(result.bundle)
    try:
        assert plan.fallbacks == {}
        got = plan.run(feeds)
        return [np.array(got[spec.name]) for spec in plan.outputs], [op for p in result.partitions for op in p.ops]
    finally:
        plan.close()


def check_gpu_first(
    path: str | Path, out_dir: Path, feeds: dict[str, np.ndarray], rtol: float = 1e-4, atol: float = 1e-5
) -> float:
    """The GPU-first plan's outputs match onnxruntime's on the original model; returns the largest error."""
    got, _ = run_gpu_first(path, out_dir, feeds)
    want = ort_outputs(path, feeds)
    worst = 0.0
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
        worst = max(worst, float(np.max(np.abs(g.astype(np.float64) - w))) if g.size else 0.0)
    return worst
