"""runtime_min: load a ragc plan bundle and run it on the processors it was compiled for.

    import runtime_min
    plan = runtime_min.load("plan/")
    outputs = plan.run({"image": x})

Imports only numpy; each processor's library (onnxruntime, vulkan, pyxrt) is imported by its backend when needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runtime_min.adaptive import AdaptivePlan, load_bundle
from runtime_min.backends.shared_memory import empty_shared
from runtime_min.errors import (
    BackendUnavailable,
    BundleError,
    DeviceFailure,
    InputError,
    RuntimeMinError,
    RuntimeMinWarning,
)
from runtime_min.format import FORMAT_VERSION
from runtime_min.manifest import TensorSpec
from runtime_min.options import LoadOptions
from runtime_min.plan import Plan

__version__ = "0.2.0"


def load(
    path: str | Path,
    *,
    cpu_threads: int | None = None,
    npu: str | None = None,
    vulkan_device: int | str | None = None,
    zero_copy: bool | None = None,
    timestamps: bool | None = None,
    disable: tuple[str, ...] | list[str] | None = None,
    xclbin_path: tuple[str, ...] | list[str] | None = None,
    verify: bool | None = None,
    variant: str | None = None,
    **unknown: Any,
) -> Plan | AdaptivePlan:
    """Check the bundle at `path` (format, schema, hashes, paths) and prepare every partition on its processor.

    cpu_threads: onnxruntime intra-op threads (0 = its default). npu: "xrt" (real hardware, default) or "sim" (the
    XDNA simulator); RAGC_NPU. vulkan_device: index or name substring (default: discrete > integrated > CPU
    implementation); RAGC_VULKAN_DEVICE. zero_copy: GPU outputs as views of mapped memory and page-aligned inputs
    (see `empty_shared`) imported instead of copied (default on; RAGC_ZERO_COPY=0 turns it off). timestamps: GPU
    kernel times in traces. disable: processors whose partitions run from their CPU fallbacks (RAGC_DISABLE).
    xclbin_path: folders holding the NPU's xclbins (RAGC_XCLBIN_PATH). verify: check every file's sha256 (default
    on). variant: pin one variant of an adaptive bundle. An unknown option is a TypeError naming the valid ones.
    """
    given = {k: v for k, v in locals().items() if k not in ("path", "unknown", "variant")} | unknown
    return load_bundle(path, LoadOptions.make(given), variant)


__all__ = [
    "AdaptivePlan",
    "FORMAT_VERSION",
    "BackendUnavailable",
    "BundleError",
    "DeviceFailure",
    "InputError",
    "LoadOptions",
    "Plan",
    "RuntimeMinError",
    "RuntimeMinWarning",
    "TensorSpec",
    "empty_shared",
    "load",
]
