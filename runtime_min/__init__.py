"""runtime_min: load a ragc plan bundle and run it on the processors it was compiled for.

    import runtime_min
    plan = runtime_min.load("plan/")
    outputs = plan.run({"image": x})

Imports only numpy; each processor's library (onnxruntime, vulkan, pyxrt) is imported by its backend, when a
plan needs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runtime_min.errors import (
    BackendUnavailable,
    BundleError,
    DeviceFailure,
    InputError,
    RuntimeMinError,
    RuntimeMinWarning,
)
from runtime_min.manifest import read_bundle
from runtime_min.plan import Plan, TensorSpec
from runtime_min.shared_memory import empty_shared

__version__ = "0.1.0"


def load(path: str | Path, **options: Any) -> Plan:
    """Verify the bundle at `path` (format, hashes, paths) and prepare every partition on its processor.

    Options: cpu_threads (onnxruntime intra-op threads, 0 = default), npu ("xrt" or "sim"; default RAGC_NPU or
    "xrt"), timestamps (True: GPU kernel times from timestamp queries, shown in traces), vulkan_device (index or
    name substring; default RAGC_VULKAN_DEVICE, else discrete > integrated > CPU implementation), zero_copy (default
    RAGC_ZERO_COPY, else on: GPU outputs come back as views of mapped memory, page-aligned inputs such as those from
    `empty_shared` are imported instead of copied).
    """
    root, manifest, schedule = read_bundle(path)
    return Plan(root, manifest, schedule, options)


__all__ = [
    "BackendUnavailable",
    "BundleError",
    "DeviceFailure",
    "InputError",
    "Plan",
    "RuntimeMinError",
    "RuntimeMinWarning",
    "TensorSpec",
    "empty_shared",
    "load",
]
