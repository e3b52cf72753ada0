"""The GPU backend: "spirv-v2" partitions through Vulkan (the `vulkan` cffi package, imported lazily).

Layers, bottom up: Device (instance, queue, command pool, a pipeline cache kept in the user cache, submission),
Allocator (buffers bound to fresh memory; frees deferred while output views are held), Kernel (a pipeline per
distinct SPIR-V file) and VulkanExecutable (one partition: weights uploaded once from the tensor store, activations
in one device-local arena, everything pre-recorded per staging set, so a run is one submit and one fence wait).

Memory bridge (load option zero_copy): page-aligned inputs are imported (VK_EXT_external_memory_host); where
device-local memory is host-visible (unified memory, resizable BAR) inputs go straight into the arena; outputs are
views of a staging set leased to the run, reused only once no array derived from them is alive.

Untrusted bundles: robustBufferAccess is on (out-of-range accesses read zeros, write nothing), every range,
binding and workgroup count is checked, and a submission that does not finish in FENCE_TIMEOUT_NS is a
DeviceFailure. cffi trap (shared/DEVICE.md): every nested struct, string and array lives in a local variable until
the Vulkan call that reads it has returned.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from runtime_min import format as fmt
from runtime_min.backends.base import Backend, CopyStats, Executable, StepTiming
from runtime_min.backends.gpu_program import GpuProgram, coopmat_name, spirv_scan
from runtime_min.backends.pipeline_cache import PipelineCache, cache_path
from runtime_min.errors import BackendUnavailable, DeviceFailure
from runtime_min.manifest import Bundle, Partition
from runtime_min.options import LoadOptions
from runtime_min.shared_memory import is_shareable, round_up

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
FENCE_TIMEOUT_NS = 30 * 10**9
MAX_LEASED = 8  # staging sets whose outputs may be out as views at once; beyond, outputs are copied
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
            status = vk.vkWaitForFences(self.device, 1, [fence], vk.VK_TRUE, FENCE_TIMEOUT_NS)
        except vk.VkError as exc:
            raise DeviceFailure(f"{self.props.deviceName} failed a submission ({type(exc).__name__}); reload") from exc
        if status == vk.VK_TIMEOUT:
            raise DeviceFailure(f"{self.props.deviceName} did not finish a partition in {FENCE_TIMEOUT_NS // 10**9} s")

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


class IoSet:
    """A host-visible staging buffer (every input and output at its io offset) and the command buffer recorded for
    it (copy in unless the inputs go elsewhere, the dispatches, copy out); `lease` refers to its views out."""

    def __init__(self, buffer: Buffer, cmd: Any) -> None:
        self.buffer, self.cmd, self.lease = buffer, cmd, None

    def free(self) -> bool:
        return self.lease is None or self.lease() is None


class Lease:
    """The owner of one run's output views into a staging set (exposes the set's memory to numpy)."""

    def __init__(self, raw: np.ndarray) -> None:
        self.__array_interface__, self._raw = raw.__array_interface__, raw


class VulkanExecutable(Executable):
    """One GPU partition: program checked, weights uploaded, pipelines built, commands recorded, all once."""

    def __init__(self, backend: VulkanBackend, partition: Partition, bundle: Bundle) -> None:
        self.dev, self.alloc, vk = backend.dev, backend.alloc, backend.dev.vk
        self.where = f"partition {partition.id} ({partition.artifact.main})"
        self.zero_copy, self.stats, self._timings, self._closed = backend.options.zero_copy, CopyStats(), [], False
        self.kernels: dict[str, Kernel] = {}
        self.buffers: list[Buffer] = []
        self.io_sets: list[IoSet] = []  # io_sets[0] is private (its outputs are copied); the others are leased
        self.desc_pool = self.query_pool = self.fence = self.upload_cmd = self.imports = self.arena_view = None
        try:
            data = bundle.read_json(partition.artifact.main, self.where)
            self.program = program = GpuProgram(data, partition, self.where)
            usage = vk.VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | vk.VK_BUFFER_USAGE_TRANSFER_SRC_BIT
            usage |= vk.VK_BUFFER_USAGE_TRANSFER_DST_BIT
            self.weights = self._buffer(program.weights_bytes, usage, "device")
            self.arena = self._arena(program.arena_bytes, usage)
            self._upload_weights(bundle)
            if self.zero_copy and self.arena_view is None and HOST_IMPORT in self.dev.extensions and program.inputs:
                self.imports = HostImports(self.alloc)  # (a mapped arena is written directly: nothing to import)
            self._kernels(bundle)
            self._descriptors()
            if backend.options.timestamps and self.dev.timestamp_bits and program.dispatches:
                count = 2 * len(program.dispatches)
                self.query_pool = self.dev.create("QueryPool", queryType=vk.VK_QUERY_TYPE_TIMESTAMP, queryCount=count)
            self.fence = vk.vkCreateFence(self.dev.device, vk.VkFenceCreateInfo(), None)
            self.io_sets.append(self._new_set())
        except BaseException:
            self.close()
            raise

    def _buffer(self, size: int, usage: int, kind: str) -> Buffer:
        self.buffers.append(self.alloc.buffer(size, usage, kind))
        return self.buffers[-1]

    def _arena(self, nbytes: int, usage: int) -> Buffer:
        """Device-local; also host-visible and mapped when the bridge is on and the device has such memory."""
        if self.zero_copy:
            try:
                arena = self._buffer(nbytes, usage, "shared")
                self.arena_view = arena.mapped
                return arena
            except DeviceFailure:  # no device-local host-visible memory type, or its heap (a BAR window) is full
                pass
        return self._buffer(nbytes, usage, "device")

    def _upload_weights(self, bundle: Bundle) -> None:
        """Every weight copied once from the mapped tensor store into staging, then by the GPU into place."""
        if not self.program.weights_bytes:
            return
        vk = self.dev.vk
        staging = self.alloc.buffer(self.program.weights_bytes, vk.VK_BUFFER_USAGE_TRANSFER_SRC_BIT, "host")
        cmd, fence = self.dev.command_buffer(), vk.vkCreateFence(self.dev.device, vk.VkFenceCreateInfo(), None)
        try:
            for name, store_offset in self.program.weight_sources():
                t = self.program.tensors[name]
                source = bundle.store.view(store_offset, t["nbytes"], self.where)
                staging.mapped[t["offset"] : t["offset"] + t["nbytes"]] = source
            vk.vkBeginCommandBuffer(cmd, vk.VkCommandBufferBeginInfo())
            vk.vkCmdCopyBuffer(
                cmd, staging.handle, self.weights.handle, 1, [vk.VkBufferCopy(size=self.program.weights_bytes)]
            )
            vk.vkEndCommandBuffer(cmd)
            self.dev.submit([cmd], fence)
        finally:
            vk.vkDestroyFence(self.dev.device, fence, None)
            vk.vkFreeCommandBuffers(self.dev.device, self.dev.pool, 1, [cmd])
            self.alloc.free(staging)

    def _kernels(self, bundle: Bundle) -> None:
        """One pipeline per distinct kernel file, each checked to read no binding its dispatches do not bind and to
        need nothing the device lacks (BackendUnavailable, so the plan falls back to the CPU with one warning); the
        pipelines are compiled on several threads (the driver's compiler is most of a cold load)."""
        todo: dict[str, tuple[bytes, int, int | None]] = {}
        for d in self.program.dispatches:
            name, count = d["kernel"], len(d["bindings"])
            if name not in todo:
                code = bundle.path(name, self.where).read_bytes()
                bindings, capabilities = spirv_scan(code, self.where)
                if max(bindings, default=-1) >= count:
                    raise fmt.bad(self.where, f"kernel {name} reads more buffers than its dispatch binds")
                missing = self.program.missing(name, capabilities, self.dev.features, self.where)
                if missing:
                    raise BackendUnavailable(
                        f"{self.dev.props.deviceName} lacks {', '.join(missing)}, which kernel {name} of "
                        f"{self.where} needs; compile for this device (ragc profile, then ragc compile)"
                    )
                todo[name] = (code, count, d["subgroup_size"])
        with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
            made = {name: pool.submit(Kernel, self.dev, code, n, name, sub) for name, (code, n, sub) in todo.items()}
        failed = [f.exception() for f in made.values() if f.exception() is not None]
        self.kernels = {name: f.result() for name, f in made.items() if f.exception() is None}
        if failed:
            raise failed[0]
        for d in self.program.dispatches:
            name, count = d["kernel"], len(d["bindings"])
            limits = self.dev.props.limits.maxComputeWorkGroupCount
            if count != self.kernels[name].bindings or any(g > limits[i] for i, g in enumerate(d["groups"])):
                raise fmt.bad(
                    self.where, f"dispatch {d['label']!r} binds or launches more than its kernel or the device takes"
                )

    def _descriptors(self) -> None:
        """One descriptor set per dispatch, each binding a tensor's range of the weights or arena buffer."""
        vk, device, dispatches = self.dev.vk, self.dev.device, self.program.dispatches
        count = max(1, sum(len(d["bindings"]) for d in dispatches))
        sizes = [vk.VkDescriptorPoolSize(type=vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, descriptorCount=count)]
        limits = {"maxSets": max(1, len(dispatches)), "poolSizeCount": 1}
        self.desc_pool = self.dev.create("DescriptorPool", pPoolSizes=sizes, **limits)
        self.descriptor_sets, regions = [], {"weights": self.weights, "arena": self.arena}
        for d in dispatches:
            layouts = vk.ffi.new("VkDescriptorSetLayout[]", [self.kernels[d["kernel"]].set_layout])
            dset = vk.vkAllocateDescriptorSets(
                device,
                vk.VkDescriptorSetAllocateInfo(
                    descriptorPool=self.desc_pool, descriptorSetCount=1, pSetLayouts=layouts
                ),
            )[0]
            tensors = [self.program.tensors[n] for n in d["bindings"]]
            infos = [
                vk.VkDescriptorBufferInfo(
                    buffer=regions[t["region"]].handle, offset=t["offset"], range=max(t["nbytes"], 4)
                )
                for t in tensors
            ]
            storage = vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER
            writes = [
                vk.VkWriteDescriptorSet(
                    dstSet=dset, dstBinding=i, descriptorCount=1, descriptorType=storage, pBufferInfo=[info]
                )
                for i, info in enumerate(infos)
            ]
            vk.vkUpdateDescriptorSets(device, len(writes), writes, 0, None)
            self.descriptor_sets.append(dset)

    def _copies(self, cmd: Any, staging: Any, names: list[str], to_device: bool, sources: dict | None = None) -> None:
        """Copy commands between a staging buffer and the arena; `sources` maps an input to an imported buffer
        (offset 0) that replaces staging as its source."""
        vk = self.dev.vk
        for name in names:
            t = self.program.tensors[name]
            host, io = (sources[name], 0) if sources and name in sources else (staging, self.program.io_offsets[name])
            (src, src_off), (dst, dst_off) = ((host, io), (self.arena.handle, t["offset"]))[:: 1 if to_device else -1]
            if t["nbytes"]:
                vk.vkCmdCopyBuffer(
                    cmd, src, dst, 1, [vk.VkBufferCopy(srcOffset=src_off, dstOffset=dst_off, size=t["nbytes"])]
                )

    def _barrier(self, cmd: Any, src: tuple[int, int], dst: tuple[int, int]) -> None:
        barrier = self.dev.vk.VkMemoryBarrier(srcAccessMask=src[1], dstAccessMask=dst[1])
        self.dev.vk.vkCmdPipelineBarrier(cmd, src[0], dst[0], 0, 1, [barrier], 0, None, 0, None)

    def _new_set(self) -> IoSet:
        """A staging buffer and its command buffer: copy in (when inputs go through staging), every dispatch with a
        barrier after it, copy out."""
        vk, program = self.dev.vk, self.program
        staging = self.alloc.buffer(
            program.io_bytes, vk.VK_BUFFER_USAGE_TRANSFER_SRC_BIT | vk.VK_BUFFER_USAGE_TRANSFER_DST_BIT, "host"
        )
        io = IoSet(staging, self.dev.command_buffer())
        compute, transfer = vk.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, vk.VK_PIPELINE_STAGE_TRANSFER_BIT
        after = (
            compute | transfer,
            vk.VK_ACCESS_SHADER_READ_BIT | vk.VK_ACCESS_SHADER_WRITE_BIT | vk.VK_ACCESS_TRANSFER_READ_BIT,
        )
        vk.vkBeginCommandBuffer(io.cmd, vk.VkCommandBufferBeginInfo())
        if self.arena_view is None and self.imports is None:
            self._copies(io.cmd, staging.handle, program.inputs, to_device=True)
        if self.query_pool is not None:
            vk.vkCmdResetQueryPool(io.cmd, self.query_pool, 0, 2 * len(program.dispatches))
        self._barrier(
            io.cmd,
            (transfer | vk.VK_PIPELINE_STAGE_HOST_BIT, vk.VK_ACCESS_TRANSFER_WRITE_BIT | vk.VK_ACCESS_HOST_WRITE_BIT),
            after,
        )
        for i, (d, dset) in enumerate(zip(program.dispatches, self.descriptor_sets, strict=True)):
            if i and d["barrier"]:  # only where this dispatch touches what the ones since the last barrier wrote
                self._barrier(io.cmd, (compute, vk.VK_ACCESS_SHADER_WRITE_BIT), after)
            kernel = self.kernels[d["kernel"]]
            vk.vkCmdBindPipeline(io.cmd, vk.VK_PIPELINE_BIND_POINT_COMPUTE, kernel.pipeline)
            sets = vk.ffi.new("VkDescriptorSet[]", [dset])
            vk.vkCmdBindDescriptorSets(io.cmd, vk.VK_PIPELINE_BIND_POINT_COMPUTE, kernel.layout, 0, 1, sets, 0, None)
            if self.query_pool is not None:
                vk.vkCmdWriteTimestamp(io.cmd, compute, self.query_pool, 2 * i)
            vk.vkCmdDispatch(io.cmd, *d["groups"])
            if self.query_pool is not None:
                vk.vkCmdWriteTimestamp(io.cmd, compute, self.query_pool, 2 * i + 1)
        self._barrier(io.cmd, (compute, vk.VK_ACCESS_SHADER_WRITE_BIT), after)
        self._copies(io.cmd, staging.handle, program.outputs, to_device=False)
        self._barrier(
            io.cmd,
            (transfer, vk.VK_ACCESS_TRANSFER_WRITE_BIT),
            (vk.VK_PIPELINE_STAGE_HOST_BIT, vk.VK_ACCESS_HOST_READ_BIT),
        )
        vk.vkEndCommandBuffer(io.cmd)
        return io

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._closed:
            raise DeviceFailure("this Vulkan executable was closed; load the plan again")
        self.program.check_feeds(feeds)
        io, leased = self._take_set()
        self.dev.submit([*self._send_inputs(feeds, io), io.cmd], self.fence)
        self.stats.runs += 1
        raw = io.buffer.mapped
        if leased:
            lease = Lease(raw)
            raw, io.lease = np.asarray(lease), weakref.ref(lease)
        outputs = {}
        for name in self.program.outputs:
            t, off = self.program.tensors[name], self.program.io_offsets[name]
            view = raw[off : off + t["nbytes"]].view(t["dtype"]).reshape(t["shape"])
            outputs[name] = view if leased else view.copy()
            self.stats.count(1 if leased else 2, t["nbytes"], avoided=1 if leased else 0)
        if self.query_pool is not None:
            self._timings = self._read_timestamps()
        return outputs

    def _take_set(self) -> tuple[IoSet, bool]:
        """A staging set no live output view points into (a new one while fewer than MAX_LEASED exist), and
        whether its outputs may be handed out as views; else the private set, whose outputs are copied."""
        if self.zero_copy:
            free = next((io for io in self.io_sets[1:] if io.free()), None)
            if free is None and len(self.io_sets) <= MAX_LEASED:
                self.io_sets.append(free := self._new_set())
            if free is not None:
                return free, True
        return self.io_sets[0], False

    def _send_inputs(self, feeds: dict[str, np.ndarray], io: IoSet) -> list[Any]:
        """Put every input where the GPU reads it; returns what must run before the set's command buffer. A mapped
        arena is written directly; where host memory can be imported, a one-time command buffer copies each input
        into the arena from the caller's own array when it is page-aligned, else from staging."""
        imported: dict[str, Any] = {}
        for name in self.program.inputs:
            t, x = self.program.tensors[name], feeds[name]
            if self.imports is not None and (buf := self.imports.buffer(x)) is not None:
                imported[name] = buf
                self.stats.count(1, t["nbytes"], avoided=1)
                continue
            if self.arena_view is not None:
                target, skipped = self.arena_view[t["offset"] : t["offset"] + t["nbytes"]], 1
            else:
                off = self.program.io_offsets[name]
                target, skipped = io.buffer.mapped[off : off + t["nbytes"]], 0
            target[:] = x.reshape(-1).view(np.uint8)
            self.stats.count(2 - skipped, t["nbytes"], avoided=skipped)
        if self.imports is None:
            return []
        vk = self.dev.vk
        self.upload_cmd = self.upload_cmd or self.dev.command_buffer()
        vk.vkResetCommandBuffer(self.upload_cmd, 0)
        vk.vkBeginCommandBuffer(
            self.upload_cmd, vk.VkCommandBufferBeginInfo(flags=vk.VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT)
        )
        self._copies(self.upload_cmd, io.buffer.handle, self.program.inputs, to_device=True, sources=imported)
        self._barrier(
            self.upload_cmd,
            (vk.VK_PIPELINE_STAGE_TRANSFER_BIT, vk.VK_ACCESS_TRANSFER_WRITE_BIT),
            (vk.VK_PIPELINE_STAGE_TRANSFER_BIT, vk.VK_ACCESS_TRANSFER_WRITE_BIT),
        )
        vk.vkEndCommandBuffer(self.upload_cmd)
        return [self.upload_cmd]

    def copy_stats(self) -> CopyStats:
        return CopyStats(**vars(self.stats))

    def _read_timestamps(self) -> list[StepTiming]:
        vk, dispatches = self.dev.vk, self.program.dispatches
        n = 2 * len(dispatches)
        data = vk.ffi.new("uint64_t[]", n)
        flags = vk.VK_QUERY_RESULT_64_BIT | vk.VK_QUERY_RESULT_WAIT_BIT
        vk.vkGetQueryPoolResults(self.dev.device, self.query_pool, 0, n, 8 * n, data, 8, flags)
        mask, period = (1 << min(self.dev.timestamp_bits, 64)) - 1, self.dev.props.limits.timestampPeriod
        ticks = [int(data[i]) & mask for i in range(n)]
        return [
            StepTiming(
                d["label"],
                int((ticks[2 * i] - ticks[0]) * period),
                int(((ticks[2 * i + 1] - ticks[2 * i]) & mask) * period),
            )
            for i, d in enumerate(dispatches)
        ]

    def timings(self) -> list[StepTiming]:
        return list(self._timings)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        vk, device = self.dev.vk, self.dev.device
        vk.vkDeviceWaitIdle(device)
        for cmd in [self.upload_cmd, *(io.cmd for io in self.io_sets)]:
            if cmd is not None:
                vk.vkFreeCommandBuffers(device, self.dev.pool, 1, [cmd])
        for handle, destroy in (
            (self.fence, vk.vkDestroyFence),
            (self.query_pool, vk.vkDestroyQueryPool),
            (self.desc_pool, vk.vkDestroyDescriptorPool),
        ):
            if handle is not None:
                destroy(device, handle, None)
        for kernel in self.kernels.values():
            kernel.close()
        if self.imports is not None:
            self.imports.close()
        for buf in self.buffers:
            self.alloc.free(buf)
        for io in self.io_sets:
            lease = io.lease() if io.lease is not None else None
            if lease is None:
                self.alloc.free(io.buffer)
            else:  # the caller still holds outputs of this set: free it (and the device) when they are dropped
                self.alloc.free_when_dead(lease, io.buffer)
            del lease
        self.io_sets, self.buffers, self.kernels = [], [], {}


class VulkanBackend(Backend):
    """The GPU processor through Vulkan."""

    device = "gpu"

    def __init__(self, options: LoadOptions | None = None) -> None:
        self.options = options or LoadOptions()
        self.dev = Device(import_vulkan(), self.options.vulkan_device)
        self.alloc: Allocator | None = Allocator(self.dev)
        vk, props, memory = self.dev.vk, self.dev.props, self.dev.memory
        both = vk.VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT | vk.VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT
        types, heaps = memory.memoryTypes, memory.memoryHeaps
        # the device-local heap is host-visible and not across a bus: a discrete card's resizable BAR does not count
        self.unified_memory = props.deviceType != vk.VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU and any(
            types[i].propertyFlags & both == both and heaps[types[i].heapIndex].size > 2**30
            for i in range(memory.memoryTypeCount)
        )
        self.has_external_memory_host = HOST_IMPORT in self.dev.extensions
        self.device_name, self.device_type = props.deviceName, TYPE_NAMES.get(props.deviceType, "other")
        self._executables: list[VulkanExecutable] = []

    @classmethod
    def open(cls, options: LoadOptions) -> VulkanBackend:
        return cls(options)

    def describe(self) -> str:
        p, vk = self.dev.props, self.dev.vk
        api = f"{vk.VK_VERSION_MAJOR(p.apiVersion)}.{vk.VK_VERSION_MINOR(p.apiVersion)}"
        ids = f"driver {p.driverVersion:#x}, vendor {p.vendorID:#x}"
        return f"{self.device_name} ({self.device_type}, Vulkan {api}, {ids})"

    def prepare(self, partition: Partition, bundle: Bundle) -> VulkanExecutable:
        self._executables.append(VulkanExecutable(self, partition, bundle))
        self.dev.pipeline_cache.save()  # now, not at close: an app that never closes its plan still loads fast
        return self._executables[-1]

    def close(self) -> None:
        for exe in self._executables:
            exe.close()
        self._executables.clear()
        if self.alloc is not None:
            self.alloc.close()
            self.alloc = None
