"""The CPU backend: each partition is an ONNX model run by onnxruntime's CPU execution provider."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from runtime_min.backends.base import Backend, Executable
from runtime_min.errors import BackendUnavailable, BundleError


class CpuExecutable(Executable):
    def __init__(self, session: Any, outputs: list[str]) -> None:
        self._session = session
        self._outputs = outputs

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self._session.run(self._outputs, feeds)  # onnxruntime releases the GIL while it computes
        return dict(zip(self._outputs, values, strict=True))


class CpuBackend(Backend):
    device = "cpu"

    def __init__(self, ort: Any, threads: int, spinning: bool) -> None:
        self._ort = ort
        self._threads = threads
        self._spinning = spinning

    @classmethod
    def open(cls, options: dict[str, Any]) -> CpuBackend:
        try:
            import onnxruntime
        except ImportError:
            raise BackendUnavailable("onnxruntime is not installed; `pip install onnxruntime`") from None
        onnxruntime.set_default_logger_severity(3)
        return cls(onnxruntime, int(options.get("cpu_threads", 0)), bool(options.get("cpu_spinning", True)))

    def prepare(self, partition: dict[str, Any], bundle_dir: Path) -> CpuExecutable:
        from runtime_min.manifest import inside

        artifact = partition["artifact"]
        if artifact["format"] != "onnx":
            raise BundleError(f"partition {partition['id']}: the CPU backend cannot run {artifact['format']!r}")
        opts = self._ort.SessionOptions()
        opts.intra_op_num_threads = self._threads
        opts.execution_mode = self._ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if self._spinning else "0")
        session = self._ort.InferenceSession(
            str(inside(bundle_dir, artifact["model"])), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        return CpuExecutable(session, [o["name"] for o in partition["outputs"]])

    def describe(self) -> str:
        return f"cpu (onnxruntime {self._ort.__version__})"
