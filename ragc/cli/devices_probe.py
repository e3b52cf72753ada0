"""What this machine offers ragc, probed read-only: the CPU and onnxruntime, every Vulkan device (software or
hardware, its features and float controls, whether ragc's kernels can run on it), the GLSL compiler, the XDNA NPU
stack, and this chip's personality. Each finding says what is missing and how to get it."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

SOFTWARE_TYPE = 4  # VK_PHYSICAL_DEVICE_TYPE_CPU: lavapipe, SwiftShader (correct, not fast)
TYPE_NAMES = {0: "other", 1: "integrated GPU", 2: "discrete GPU", 3: "virtual GPU", 4: "CPU (software)"}
EXTENSIONS = ("VK_EXT_external_memory_host", "VK_KHR_shader_float_controls", "VK_KHR_8bit_storage")


def cpu_report() -> dict[str, Any]:
    """The CPU and the onnxruntime that runs CPU partitions (and every fallback)."""
    from ragc.personality.chip import cpu_facts

    facts = cpu_facts()
    try:
        import onnxruntime
    except ImportError as exc:
        return facts | {"available": False, "reason": f"onnxruntime not importable ({exc}): pip install onnxruntime"}
    return facts | {
        "available": True,
        "onnxruntime": onnxruntime.__version__,
        "providers": list(onnxruntime.get_available_providers()),
        "used_provider": "CPUExecutionProvider",
    }


def vulkan_report() -> dict[str, Any]:
    """Every Vulkan device with its facts, and which one runtime_min picks; or why there is none."""
    try:
        import vulkan as vk
    except (ImportError, OSError) as exc:
        return {
            "available": False,
            "reason": f"no Vulkan ({exc}): pip install vulkan; apt install libvulkan1",
            "devices": [],
        }
    try:
        instance = vk.vkCreateInstance(
            vk.VkInstanceCreateInfo(pApplicationInfo=vk.VkApplicationInfo(apiVersion=vk.VK_MAKE_VERSION(1, 2, 0))),
            None,
        )
    except vk.VkError as exc:
        reason = f"no Vulkan driver ({type(exc).__name__}): install one (e.g. mesa-vulkan-drivers)"
        return {"available": False, "reason": reason, "devices": []}
    try:
        physical = list(vk.vkEnumeratePhysicalDevices(instance))
        devices = [_device(vk, d, i) for i, d in enumerate(physical)]
        picked = _picked(vk, physical) if physical else None
    finally:
        vk.vkDestroyInstance(instance, None)
    for device in devices:
        device["picked"] = device["index"] == picked
    if not devices:
        return {"available": False, "reason": "Vulkan found no device: install a driver", "devices": []}
    usable = [d for d in devices if not d["missing"]]
    reason = None if usable else f"no device has {', '.join(devices[0]['missing'])}, which ragc's kernels require"
    return {"available": bool(usable), "reason": reason, "devices": devices}


def _picked(vk: Any, physical: list[Any]) -> int | None:
    """The index runtime_min opens (load option vulkan_device / RAGC_VULKAN_DEVICE, else the most capable)."""
    from runtime_min.backends.vulkan_device import pick_device
    from runtime_min.errors import BackendUnavailable
    from runtime_min.options import LoadOptions

    try:
        return physical.index(pick_device(vk, physical, LoadOptions.make({}).vulkan_device))
    except BackendUnavailable:
        return None


def _device(vk: Any, physical: Any, index: int) -> dict[str, Any]:
    from codegen.gpu.emit import REQUIRES

    props = vk.vkGetPhysicalDeviceProperties(physical)
    features = vk.vkGetPhysicalDeviceFeatures(physical)
    memory = vk.vkGetPhysicalDeviceMemoryProperties(physical)
    extensions = {e.extensionName for e in vk.vkEnumerateDeviceExtensionProperties(physical, None)}
    api = (vk.VK_VERSION_MAJOR(props.apiVersion), vk.VK_VERSION_MINOR(props.apiVersion))
    controls = _float_controls(vk, physical) if api >= (1, 2) or EXTENSIONS[1] in extensions else {}
    families = vk.vkGetPhysicalDeviceQueueFamilyProperties(physical)
    compute = [f for f in families if f.queueFlags & vk.VK_QUEUE_COMPUTE_BIT]
    return {
        "index": index,
        "name": str(props.deviceName),
        "type": TYPE_NAMES.get(int(props.deviceType), "other"),
        "software": int(props.deviceType) == SOFTWARE_TYPE,
        "api": f"{api[0]}.{api[1]}",
        "vendor_id": f"{props.vendorID:#06x}",
        "device_id": f"{props.deviceID:#06x}",
        "memory_gib": round(sum(memory.memoryHeaps[i].size for i in range(memory.memoryHeapCount)) / 2**30, 1),
        "compute_queue": bool(compute),
        "timestamps": bool(compute and compute[0].timestampValidBits),
        "features": {
            "shaderInt64": bool(features.shaderInt64),
            "shaderFloat64": bool(features.shaderFloat64),
            "robustBufferAccess": bool(features.robustBufferAccess),
        },
        "extensions": {name: name in extensions for name in EXTENSIONS},
        "float_controls": controls,
        "missing": [r for r in REQUIRES if not controls.get(r)] + ([] if compute else ["a compute queue"]),
    }


def _float_controls(vk: Any, physical: Any) -> dict[str, bool]:
    """VkPhysicalDeviceFloatControlsProperties as {field: bool}."""
    props = vk.ffi.new(
        "VkPhysicalDeviceFloatControlsProperties*",
        {"sType": vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FLOAT_CONTROLS_PROPERTIES, "pNext": vk.ffi.NULL},
    )
    chain = vk.ffi.new(
        "VkPhysicalDeviceProperties2*", {"sType": vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, "pNext": props}
    )
    vk.vkGetPhysicalDeviceProperties2(physical, chain)
    return {name: bool(getattr(props, name)) for name in dir(props) if name.startswith("shader")}


def glslc_report() -> dict[str, Any]:
    """The GLSL compiler that turns ragc's kernel templates into SPIR-V when a plan has GPU partitions."""
    tool = shutil.which("glslc")
    if tool is None:
        return {"available": False, "reason": "glslc not on PATH: apt install glslc (GPU partitions cannot compile)"}
    try:
        out = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"available": False, "reason": f"{tool} did not answer ({type(exc).__name__})"}
    return {"available": True, "path": tool, "version": out.splitlines()[0] if out else "unknown"}


def npu_report() -> dict[str, Any]:
    """The XDNA stack (kernel, driver, device node, firmware, XRT, pyxrt); the simulator is always there."""
    from ragc.profiler.npu_stack import npu_stack

    findings = [{"part": f.part, "found": f.found, "detail": f.detail} for f in npu_stack()]
    missing = [f for f in findings if not f["found"]]
    reason = None if not missing else f"{missing[0]['part']}: {missing[0]['detail']}"
    return {"available": not missing, "reason": reason, "stack": findings, "simulator": True}


def personality_report() -> dict[str, Any]:
    """This chip's id and whether it was profiled (compiling without --target profiles it first)."""
    from ragc.personality.store import current_chip_id, store_path

    chip = current_chip_id()
    path = store_path(chip)
    return {"chip_id": chip, "profiled": path.is_file(), "path": str(path)}


def report() -> dict[str, Any]:
    """Everything `ragc devices` shows."""
    from ragc.cli.versions import versions

    return {
        "versions": versions(),
        "cpu": cpu_report(),
        "gpu": vulkan_report(),
        "glslc": glslc_report(),
        "npu": npu_report(),
        "personality": personality_report(),
    }
