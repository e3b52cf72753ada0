"""Chip identity: the stable facts of this machine's CPU, Vulkan GPUs and XDNA NPU, and an id hashed from them."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import platform
import warnings
from pathlib import Path
from typing import Any

# /proc/cpuinfo flags that matter to kernels; the full list changes with microcode and hypervisors.
ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "asimd",
    "sve",
)
VOLATILE_KEYS = ("driver_version", "pyxrt_version")  # updated by driver installs; not part of the chip id


def cpu_facts(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """Model name, logical core count and kernel-relevant ISA flags."""
    model, flags = platform.processor() or platform.machine(), set()
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model", "Hardware") and value.strip():
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    return {"model": model, "cores": os.cpu_count() or 1, "isa": [f for f in ISA_FLAGS if f in flags]}


def _vk_devices(vk: Any) -> list[dict[str, Any]]:
    app = vk.VkApplicationInfo(sType=vk.VK_STRUCTURE_TYPE_APPLICATION_INFO, apiVersion=vk.VK_MAKE_VERSION(1, 1, 0))
    info = vk.VkInstanceCreateInfo(sType=vk.VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, pApplicationInfo=app)
    instance = vk.vkCreateInstance(info, None)
    try:
        found = []
        for phys in vk.vkEnumeratePhysicalDevices(instance):
            props = vk.vkGetPhysicalDeviceProperties(phys)
            mem = vk.vkGetPhysicalDeviceMemoryProperties(phys)
            heaps = [
                {
                    "bytes": int(mem.memoryHeaps[i].size),
                    "device_local": bool(mem.memoryHeaps[i].flags & vk.VK_MEMORY_HEAP_DEVICE_LOCAL_BIT),
                }
                for i in range(mem.memoryHeapCount)
            ]
            local_visible = vk.VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT | vk.VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT
            unified = any(
                (mem.memoryTypes[i].propertyFlags & local_visible) == local_visible
                and heaps[mem.memoryTypes[i].heapIndex]["bytes"] >= max(h["bytes"] for h in heaps)
                for i in range(mem.memoryTypeCount)
            )
            found.append(
                {
                    "name": str(props.deviceName),
                    "vendor_id": int(props.vendorID),
                    "device_id": int(props.deviceID),
                    "device_type": int(props.deviceType),
                    "driver_version": int(props.driverVersion),
                    "heaps": heaps,
                    "unified": unified,
                }
            )
        return found
    finally:
        vk.vkDestroyInstance(instance, None)


def vulkan_facts() -> list[dict[str, Any]]:
    """Every Vulkan physical device (name, ids, heaps, unified memory); empty when Vulkan cannot start."""
    try:
        import vulkan as vk
    except (ImportError, OSError):  # no Python binding or no loader: a machine without a Vulkan GPU
        return []
    try:
        return _vk_devices(vk)
    except Exception as exc:  # a loader that fails to start: say so, since the chip id then lacks its GPU
        warnings.warn(f"Vulkan did not start ({type(exc).__name__}: {exc}); this chip has no GPU here", stacklevel=2)
        return []


def npu_facts(accel_dir: Path = Path("/dev/accel")) -> dict[str, Any] | None:
    """The XDNA NPU (an /dev/accel/accel* node) and pyxrt's view of it, or None without one."""
    nodes = sorted(p.name for p in accel_dir.glob("accel*")) if accel_dir.is_dir() else []
    if not nodes:
        return None
    facts: dict[str, Any] = {"nodes": nodes}
    try:
        import pyxrt

        facts["pyxrt_version"] = str(getattr(pyxrt, "__version__", "unknown"))
        facts["name"] = str(pyxrt.device(0).get_info(pyxrt.xrt_info_device.name))
    except Exception:  # pyxrt absent or the device refuses a query: keep the node facts
        pass
    return facts


def chip_facts() -> dict[str, Any]:
    """All facts of this chip: {"cpu": ..., "gpus": [...], "npu": ... | None}, detected once per process (the
    hardware does not change under a process, and a GPU busy with this process's plans must not change its id)."""
    return copy.deepcopy(_detected_facts())


@functools.cache
def _detected_facts() -> dict[str, Any]:
    return {"cpu": cpu_facts(), "gpus": vulkan_facts(), "npu": npu_facts()}


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def chip_id(facts: dict[str, Any]) -> str:
    """A short, stable id: a readable CPU stem plus a hash of the non-volatile facts."""
    digest = hashlib.sha256(json.dumps(_stable(facts), sort_keys=True).encode()).hexdigest()[:12]
    stem = "".join(c if c.isalnum() else "-" for c in str(facts["cpu"]["model"]).lower()).strip("-")
    return f"{'-'.join(filter(None, stem.split('-')))[:40]}-{digest}"
