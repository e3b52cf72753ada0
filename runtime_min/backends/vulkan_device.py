"""The lower layers of the GPU backend (vulkan.py): Device (instance, queue, command pool, pipeline cache, features,
submission), Buffer and Allocator (buffers bound to fresh memory; frees deferred while output views are held),
Kernel (a pipeline per distinct SPIR-V file) and HostImports (host arrays imported as buffers,
VK_EXT_external_memory_host). The `vulkan` cffi package is imported lazily (`import_vulkan`).

cffi trap (shared/DEVICE.md): every nested struct, string and array lives in a local variable until the Vulkan
call that reads it has returned.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Any

import numpy as np

from runtime_min import format as fmt
from runtime_min.backends.gpu_program import coopmat_name
from runtime_min.backends.pipeline_cache import PipelineCache, cache_path
from runtime_min.backends.shared_memory import is_shareable, round_up
from runtime_min.errors import BackendUnavailable, DeviceFailure

HOST_IMPORT = "VK_EXT_external_memory_host"
FLOAT_CONTROLS = "VK_KHR_shader_float_controls"  # core in Vulkan 1.2; enabled where a 1.1 device offers it
COOPMAT = "VK_KHR_cooperative_matrix"
# feature structs chained into vkGetPhysicalDeviceFeatures2 and vkCreateDevice (every supported feature on): the
# struct, its sType, the extension adding it and the Vulkan 1.x that made it core (9: never)
FEATURE_STRUCTS = (
    ("16BitStorageFeatures", "16BIT_STORAGE_FEATURES", "VK_KHR_16bit_storage", 1),
    ("8BitStorageFeatures", "8BIT_STORAGE_FEATURES", "VK_KHR_8bit_storage", 2),
    ("ShaderFloat16Int8Features", "SHADER_FLOAT16_INT8_FEATURES", "VK_KHR_shader_float16_int8", 2),
    ("ShaderIntegerDotProductFeatures", "SHADER_INTEGER_DOT_PRODUCT_FEATURES", "VK_KHR_shader_integer_dot_product", 3),
    ("SubgroupSizeControlFeatures", "SUBGROUP_SIZE_CONTROL_FEATURES", "VK_EXT_subgroup_size_control", 3),
    ("VulkanMemoryModelFeatures", "VULKAN_MEMORY_MODEL_FEATURES", "VK_KHR_vulkan_memory_model", 2),
    ("CooperativeMatrixFeaturesKHR", "COOPERATIVE_MATRIX_FEATURES_KHR", COOPMAT, 9),
)
TYPE_NAMES = {0: "other", 1: "integrated", 2: "discrete", 3: "virtual", 4: "cpu"}
TYPE_RANK = {2: 0, 1: 1, 3: 2, 4: 3, 0: 4}  # preference, lower first: discrete, integrated, virtual, CPU, other
FENCE_TIMEOUT_S = {4: 600}  # by device type: a CPU device (lavapipe) runs a VGG in tens of seconds
FENCE_TIMEOUT_DEFAULT_S = 30
IMPORT_CACHE = 8  # imported host arrays kept (with a reference, so their memory cannot move)


def import_vulkan() -> Any:
    try:
        import vulkan
    except ImportError as exc:
        raise BackendUnavailable(f"vulkan package not installed ({exc}); pip install vulkan") from exc
    except OSError as exc:
        raise BackendUnavailable(f"Vulkan loader missing ({exc}); install libvulkan1 and a driver") from exc
    return vulkan


def pick_device(vk: Any, devices: list, wanted: str | None) -> Any:
    """The physical device named by `wanted` (index or name substring), else the most capable kind present."""
    props = [vk.vkGetPhysicalDeviceProperties(d) for d in devices]
    if wanted:
        if wanted.isdigit() and int(wanted) < len(devices):
            return devices[int(wanted)]
        for device, p in zip(devices, props, strict=True):
            if wanted.lower() in p.deviceName.lower():
                return device
        names = ", ".join(p.deviceName for p in props)
        raise BackendUnavailable(
            f"no Vulkan device matches {wanted!r} (have: {names}); set vulkan_device (RAGC_VULKAN_DEVICE) to an "
            "index or a name substring"
        )
    return devices[min(range(len(devices)), key=lambda i: (TYPE_RANK.get(props[i].deviceType, 9), i))]


def _struct(vk: Any, name: str, stype: str, chained: Any = None) -> Any:
    """A zeroed Vk<name> with its sType (and pNext) set, for the queries the package has no wrapper for."""
    fields = {"sType": getattr(vk, f"VK_STRUCTURE_TYPE_{stype}"), "pNext": chained or vk.ffi.NULL}
    return vk.ffi.new(f"Vk{name}*", fields)


class Device:
    """One physical device opened: instance, logical device, compute queue, command pool, pipeline cache."""

    def __init__(self, vk: Any, wanted: str | None) -> None:
        self.vk = vk
        app = vk.VkApplicationInfo(pApplicationName="ragc", apiVersion=vk.VK_MAKE_VERSION(1, 2, 0))
        try:
            self.instance = vk.vkCreateInstance(vk.VkInstanceCreateInfo(pApplicationInfo=app), None)
            devices = list(vk.vkEnumeratePhysicalDevices(self.instance))
        except vk.VkError as exc:
            raise BackendUnavailable(f"no usable Vulkan driver ({type(exc).__name__}); install a Vulkan ICD") from exc
        try:
            if not devices:
                raise BackendUnavailable("Vulkan found no device; install a driver (e.g. mesa-vulkan-drivers)")
            self.physical = pick_device(vk, devices, wanted)
            self.props = vk.vkGetPhysicalDeviceProperties(self.physical)
            self.fence_timeout_s = FENCE_TIMEOUT_S.get(self.props.deviceType, FENCE_TIMEOUT_DEFAULT_S)
            self.memory = vk.vkGetPhysicalDeviceMemoryProperties(self.physical)
            families = vk.vkGetPhysicalDeviceQueueFamilyProperties(self.physical)
            compute = [i for i, f in enumerate(families) if f.queueFlags & vk.VK_QUEUE_COMPUTE_BIT]
            if not compute:
                raise BackendUnavailable(f"{self.props.deviceName} has no compute queue; pick another device")
            self.family, self.timestamp_bits = compute[0], families[compute[0]].timestampValidBits
            extensions = vk.vkEnumerateDeviceExtensionProperties(self.physical, None)
            self.extensions = sorted(e.extensionName for e in extensions)
            self.features: dict[str, bool] = {}  # feature and float-controls property names -> supported
            self.device = self._create_device()
            self.float_controls = self._float_controls()
            self.features.update(self.float_controls, **dict.fromkeys(self._coopmat_shapes(), True))
        except BaseException:
            vk.vkDestroyInstance(self.instance, None)
            raise
        self.queue = vk.vkGetDeviceQueue(self.device, self.family, 0)
        reset = vk.VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT
        self.pool = self.create("CommandPool", queueFamilyIndex=self.family, flags=reset)
        self.pipeline_cache = PipelineCache(vk, self.device, cache_path(self.props))
        self._submit_lock = threading.Lock()

    def _create_device(self) -> Any:
        """Every supported feature on (core, FEATURE_STRUCTS: 8/16-bit storage and arithmetic, integer dot products,
        subgroup size control, cooperative matrices), robust buffer access included; `features` records them."""
        vk, ffi, minor = self.vk, self.vk.ffi, self.vk.VK_VERSION_MINOR(self.props.apiVersion)
        names = [e for e in (FLOAT_CONTROLS, HOST_IMPORT) if e in self.extensions]
        chain, structs = vk.ffi.NULL, []
        for name, stype, extension, core in FEATURE_STRUCTS:
            if extension in self.extensions or minor >= core:
                names += [extension] if extension in self.extensions and minor < core else []
                chain = _struct(vk, f"PhysicalDevice{name}", f"PHYSICAL_DEVICE_{stype}", chain)
                structs.append(chain)
        features = _struct(vk, "PhysicalDeviceFeatures2", "PHYSICAL_DEVICE_FEATURES_2", chain)
        vk.vkGetPhysicalDeviceFeatures2(self.physical, features)
        for s in [features.features, *structs]:
            self.features.update({f: bool(getattr(s, f)) for f in dir(s) if f not in ("sType", "pNext")})
        priority = ffi.new("float[]", [1.0])
        queue = vk.VkDeviceQueueCreateInfo(queueFamilyIndex=self.family, queueCount=1, pQueuePriorities=priority)
        ext_names = [ffi.new("char[]", n.encode()) for n in names]
        ext_array = ffi.new("char*[]", ext_names)
        extensions = {"enabledExtensionCount": len(names), "ppEnabledExtensionNames": ext_array if names else None}
        info = vk.VkDeviceCreateInfo(pNext=features, queueCreateInfoCount=1, pQueueCreateInfos=[queue], **extensions)
        try:
            return vk.vkCreateDevice(self.physical, info, None)
        except vk.VkError as exc:
            raise BackendUnavailable(f"cannot open {self.props.deviceName}: {type(exc).__name__}") from exc

    def create(self, kind: str, **fields: Any) -> Any:
        """vkCreate<kind> with a Vk<kind>CreateInfo of `fields` (every nested value stays alive in `fields`)."""
        return getattr(self.vk, f"vkCreate{kind}")(self.device, getattr(self.vk, f"Vk{kind}CreateInfo")(**fields), None)

    def _float_controls(self) -> dict[str, bool]:
        """VkPhysicalDeviceFloatControlsProperties as {field: bool} (all false where neither 1.2 nor the extension)."""
        vk = self.vk
        if vk.VK_VERSION_MINOR(self.props.apiVersion) < 2 and FLOAT_CONTROLS not in self.extensions:
            return {}
        props = self.query("PhysicalDeviceFloatControlsProperties", "PHYSICAL_DEVICE_FLOAT_CONTROLS_PROPERTIES")
        return {name: bool(getattr(props, name)) for name in dir(props) if name.startswith("shader")}

    def _coopmat_shapes(self) -> list[str]:
        """The device's cooperative-matrix shapes and types (vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR) as
        requirement names (gpu_program.coopmat_name), subgroup scope only."""
        vk, ffi = self.vk, self.vk.ffi
        if not self.features.get("cooperativeMatrix"):
            return []
        name = "vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR"  # called raw: the wrapper leaves sType unset
        fn = ffi.cast(f"PFN_{name}", vk.lib.vkGetInstanceProcAddr(self.instance, name.encode()))
        count = ffi.new("uint32_t*")
        fn(self.physical, count, ffi.NULL)
        stype = vk.VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_KHR
        props = ffi.new("VkCooperativeMatrixPropertiesKHR[]", [{"sType": stype} for _ in range(count[0])])
        fn(self.physical, count, props)
        shapes = [
            coopmat_name(p.MSize, p.NSize, p.KSize, (p.AType, p.BType, p.CType, p.ResultType), p.saturatingAccumulation)
            for p in props[0 : count[0]]
            if p.scope == 3  # VK_SCOPE_SUBGROUP_KHR
        ]
        return sorted(name for name in shapes if name)

    def query(self, name: str, stype: str) -> Any:
        """The device's Vk<name> properties struct, filled through vkGetPhysicalDeviceProperties2."""
        props = _struct(self.vk, name, stype)
        chain = _struct(self.vk, "PhysicalDeviceProperties2", "PHYSICAL_DEVICE_PROPERTIES_2", props)
        self.vk.vkGetPhysicalDeviceProperties2(self.physical, chain)
        return props

    def command_buffer(self) -> Any:
        info = self.vk.VkCommandBufferAllocateInfo(commandPool=self.pool, level=0, commandBufferCount=1)  # primary
        return self.vk.vkAllocateCommandBuffers(self.device, info)[0]

    def submit(self, cmds: list[Any], fence: Any) -> None:
        """Submit recorded command buffers in order as one batch and wait (cffi releases the GIL while waiting)."""
        vk = self.vk
        array = vk.ffi.new("VkCommandBuffer[]", cmds)
        batch = vk.VkSubmitInfo(commandBufferCount=len(cmds), pCommandBuffers=array)
        try:
            vk.vkResetFences(self.device, 1, [fence])
            with self._submit_lock:  # one queue, shared by every executable
                vk.vkQueueSubmit(self.queue, 1, [batch], fence)
            status = vk.vkWaitForFences(self.device, 1, [fence], vk.VK_TRUE, self.fence_timeout_s * 10**9)
        except vk.VkTimeout:  # the vulkan package raises success codes other than VK_SUCCESS
            status = vk.VK_TIMEOUT
        except vk.VkError as exc:
            raise DeviceFailure(f"{self.props.deviceName} failed a submission ({type(exc).__name__}); reload") from exc
        if status == vk.VK_TIMEOUT:
            raise DeviceFailure(f"{self.props.deviceName} did not finish a partition in {self.fence_timeout_s} s")

    def close(self) -> None:
        self.vk.vkDeviceWaitIdle(self.device)
        self.pipeline_cache.close()
        self.vk.vkDestroyCommandPool(self.device, self.pool, None)

    def destroy(self) -> None:
        self.vk.vkDestroyDevice(self.device, None)
        self.vk.vkDestroyInstance(self.instance, None)


class Buffer:
    """A VkBuffer bound to its own memory; `mapped` is a uint8 view of it when host-visible."""

    def __init__(self, handle: Any, memory: Any, size: int, mapped: np.ndarray | None) -> None:
        self.handle, self.memory, self.size, self.mapped = handle, memory, size, mapped


class Allocator:
    """Buffers of three kinds: "host" (coherent, cached if possible), "device" (device-local) and "shared"
    (device-local and host-visible; DeviceFailure where no memory type is both)."""

    def __init__(self, device: Device) -> None:
        self.dev, self.vk = device, device.vk
        self._lock = threading.Lock()
        self._pending = 0  # buffers kept alive for views still held by the caller
        self._closing = False

    def buffer(self, size: int, usage: int, kind: str) -> Buffer:
        vk, device, memory = self.vk, self.dev.device, self.dev.memory
        handle = self.dev.create("Buffer", size=max(size, fmt.GPU_ALIGN), usage=usage, sharingMode=0)  # exclusive
        req = vk.vkGetBufferMemoryRequirements(device, handle)
        coherent = vk.VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | vk.VK_MEMORY_PROPERTY_HOST_COHERENT_BIT
        local = vk.VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT
        required = {"host": coherent, "device": local, "shared": local | coherent}[kind]
        preferred = required | (vk.VK_MEMORY_PROPERTY_HOST_CACHED_BIT if kind == "host" else 0)
        flags = [
            memory.memoryTypes[i].propertyFlags * (req.memoryTypeBits >> i & 1) for i in range(memory.memoryTypeCount)
        ]
        index = next((i for i, f in enumerate(flags) if f & preferred == preferred), None)
        index = next((i for i, f in enumerate(flags) if f & required == required), None) if index is None else index
        try:
            if index is None:
                raise DeviceFailure(f"{self.dev.props.deviceName} has no memory type with flags {required:#x}")
            mem = vk.vkAllocateMemory(
                device, vk.VkMemoryAllocateInfo(allocationSize=req.size, memoryTypeIndex=index), None
            )
        except (DeviceFailure, vk.VkError) as exc:
            vk.vkDestroyBuffer(device, handle, None)
            if isinstance(exc, DeviceFailure):
                raise
            raise DeviceFailure(f"out of GPU memory allocating {size} bytes; use a smaller model or batch") from exc
        vk.vkBindBufferMemory(device, handle, mem, 0)
        mapped = vk.vkMapMemory(device, mem, 0, max(size, fmt.GPU_ALIGN), 0) if kind != "device" else None
        return Buffer(handle, mem, size, None if mapped is None else np.frombuffer(mapped, np.uint8))

    def free(self, buf: Buffer) -> None:
        self.vk.vkDestroyBuffer(self.dev.device, buf.handle, None)
        self.vk.vkFreeMemory(self.dev.device, buf.memory, None)  # freeing mapped memory unmaps it

    def free_when_dead(self, owner: Any, buf: Buffer) -> None:
        """Free `buf` once `owner` (the lease of views into it) dies; the device outlives it."""
        with self._lock:
            self._pending += 1
        weakref.finalize(owner, self._late_free, buf)

    def _late_free(self, buf: Buffer) -> None:
        self.free(buf)
        with self._lock:
            self._pending -= 1
            last = self._closing and self._pending == 0
        if last:
            self.dev.destroy()

    def close(self) -> None:
        """Destroy the device now, or when the last buffer kept for outstanding views is freed."""
        self.dev.close()
        with self._lock:
            self._closing, now = True, self._pending == 0
        if now:
            self.dev.destroy()


class Kernel:
    """One SPIR-V module as a compute pipeline with `bindings` storage buffers at set 0."""

    def __init__(self, dev: Device, code: bytes, bindings: int, name: str, subgroup: int | None = None) -> None:
        vk, compute = dev.vk, dev.vk.VK_SHADER_STAGE_COMPUTE_BIT
        self.dev, self.bindings, self.pipeline = dev, bindings, None
        self.module = dev.create("ShaderModule", codeSize=len(code), pCode=code)
        slot = {"descriptorType": vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, "descriptorCount": 1, "stageFlags": compute}
        slots = [vk.VkDescriptorSetLayoutBinding(binding=i, **slot) for i in range(bindings)]
        self.set_layout = dev.create("DescriptorSetLayout", bindingCount=bindings, pBindings=slots)
        layouts = vk.ffi.new("VkDescriptorSetLayout[]", [self.set_layout])
        self.layout = dev.create("PipelineLayout", setLayoutCount=1, pSetLayouts=layouts)
        entry = vk.ffi.new("char[]", b"main")
        size = vk.VkPipelineShaderStageRequiredSubgroupSizeCreateInfo(requiredSubgroupSize=subgroup or 0)
        full = vk.VK_PIPELINE_SHADER_STAGE_CREATE_REQUIRE_FULL_SUBGROUPS_BIT_EXT if subgroup else 0
        extra = {"pNext": size, "flags": full} if subgroup else {}
        stage = vk.VkPipelineShaderStageCreateInfo(stage=compute, module=self.module, pName=entry, **extra)
        info = vk.VkComputePipelineCreateInfo(stage=stage, layout=self.layout)
        try:
            self.pipeline = vk.vkCreateComputePipelines(dev.device, dev.pipeline_cache.handle, 1, [info], None)[0]
        except vk.VkError as exc:
            self.close()
            raise BackendUnavailable(f"{dev.props.deviceName} rejected kernel {name} ({type(exc).__name__})") from exc

    def close(self) -> None:
        vk, device = self.dev.vk, self.dev.device
        if self.pipeline is not None:
            vk.vkDestroyPipeline(device, self.pipeline, None)
        vk.vkDestroyPipelineLayout(device, self.layout, None)
        vk.vkDestroyDescriptorSetLayout(device, self.set_layout, None)
        vk.vkDestroyShaderModule(device, self.module, None)


class HostImports:
    """Host arrays imported as transfer-source buffers (VK_EXT_external_memory_host), cached by address; the cache
    holds each array, so its memory stays allocated and in place while Vulkan may read it."""

    def __init__(self, alloc: Allocator) -> None:
        vk, self.alloc = alloc.vk, alloc
        stype = "PHYSICAL_DEVICE_EXTERNAL_MEMORY_HOST_PROPERTIES_EXT"
        host = alloc.dev.query("PhysicalDeviceExternalMemoryHostPropertiesEXT", stype)
        self.align = int(host.minImportedHostPointerAlignment)
        self._properties = vk.vkGetDeviceProcAddr(alloc.dev.device, "vkGetMemoryHostPointerPropertiesEXT")
        self._cache: OrderedDict[tuple[int, int], tuple[np.ndarray, Buffer]] = OrderedDict()

    def buffer(self, array: np.ndarray) -> Any | None:
        """A VkBuffer over `array`'s own memory, or None when it cannot be imported (alignment, driver refusal)."""
        key = (array.ctypes.data, array.nbytes)
        if key not in self._cache:
            imported = self._import(array) if is_shareable(array, self.align) else None
            if imported is None:
                return None
            self._cache[key] = (array, imported)
            while len(self._cache) > IMPORT_CACHE:
                self.alloc.free(self._cache.popitem(last=False)[1][1])
        self._cache.move_to_end(key)
        return self._cache[key][1].handle

    def _import(self, array: np.ndarray) -> Buffer | None:
        vk, device = self.alloc.vk, self.alloc.dev.device
        kind = vk.VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT
        size, pointer = round_up(array.nbytes, self.align), vk.ffi.cast("void*", array.ctypes.data)
        try:
            bits = self._properties(device, kind, pointer).memoryTypeBits
        except vk.VkError:
            return None
        external = vk.VkExternalMemoryBufferCreateInfo(handleTypes=kind)
        handle = self.alloc.dev.create("Buffer", pNext=external, size=size, usage=vk.VK_BUFFER_USAGE_TRANSFER_SRC_BIT)
        bits &= vk.vkGetBufferMemoryRequirements(device, handle).memoryTypeBits
        types = [i for i in range(32) if bits & (1 << i)]
        source = vk.VkImportMemoryHostPointerInfoEXT(handleType=kind, pHostPointer=pointer)
        try:
            info = vk.VkMemoryAllocateInfo(pNext=source, allocationSize=size, memoryTypeIndex=types[0])
            memory = vk.vkAllocateMemory(device, info, None)
        except (IndexError, vk.VkError):
            vk.vkDestroyBuffer(device, handle, None)
            return None
        vk.vkBindBufferMemory(device, handle, memory, 0)
        return Buffer(handle, memory, size, None)

    def close(self) -> None:
        for _, buf in self._cache.values():
            self.alloc.free(buf)
        self._cache.clear()
