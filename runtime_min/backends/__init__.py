"""The backend registry: processor name -> backend class, each imported only when a plan needs it."""

from __future__ import annotations

import importlib

from runtime_min.backends.base import Backend, Executable, StepTiming
from runtime_min.errors import BackendUnavailable
from runtime_min.options import LoadOptions

_BACKENDS = {
    "cpu": ("runtime_min.backends.cpu", "CpuBackend"),
    "gpu": ("runtime_min.backends.vulkan", "VulkanBackend"),
    "npu:xrt": ("runtime_min.backends.npu_xrt", "NpuXrtBackend"),
    "npu:sim": ("runtime_min.backends.npu_sim", "NpuSimBackend"),
}


def backend_key(device: str, options: LoadOptions) -> str:
    """The NPU has two backends: `xrt` (real hardware, default) and `sim` (RAGC_NPU=sim or npu="sim")."""
    return f"npu:{options.npu}" if device == "npu" else device


def open_backend(device: str, options: LoadOptions) -> Backend:
    key = backend_key(device, options)
    if key not in _BACKENDS:
        raise BackendUnavailable(f"no backend for processor {device!r}")
    module_name, class_name = _BACKENDS[key]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable(f"the {key} backend cannot be imported ({exc})") from None
    return getattr(module, class_name).open(options)


__all__ = ["Backend", "Executable", "StepTiming", "backend_key", "open_backend"]
