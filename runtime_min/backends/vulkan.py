"""The GPU backend: "spirv-v2" partitions through Vulkan (the `vulkan` cffi package, imported lazily).

Layers, bottom up: Device (instance, device, queue, command pool, pipeline cache kept in the user cache, one
submission path), Allocator (memory types, buffers bound to fresh memory, frees deferred while views are held),
Buffer, Kernel (one shader module and pipeline per distinct SPIR-V file), and VulkanExecutable (one partition:
weights uploaded once from the tensor store, activations in one device-local arena, every dispatch pre-recorded in
one command buffer, copies in and out pre-recorded per staging set; `run` submits once and waits on a fence).

Memory bridge (load option zero_copy, default on): inputs in page-aligned host memory are imported
(VK_EXT_external_memory_host) and copied by the GPU straight from there; where device-local memory is host-visible
(unified memory, resizable BAR) inputs are written straight into the arena. Outputs come back as views of a staging
set leased to the run; a set is reused only once no array derived from its views is alive (numpy `base` chain).

Untrusted bundles: robustBufferAccess is on (an out-of-range access inside a kernel reads zeros, writes nothing),
every range, binding and workgroup count is checked against the program and the device, and a submission that
does not finish within FENCE_TIMEOUT_NS is a DeviceFailure, not a hang.

cffi trap (shared/DEVICE.md): the `vulkan` package does not keep nested structs, strings or arrays alive, so every
one of them is held in a local variable until the call that reads it has returned.
"""

from __future__ import annotations

import os
import tempfile
import threading
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from runtime_min import format as fmt
from runtime_min.backends.base import Backend, CopyStats, Executable, StepTiming
from runtime_min.backends.gpu_program import GpuProgram
from runtime_min.errors import BackendUnavailable, DeviceFailure
from runtime_min.manifest import Bundle, Partition
from runtime_min.options import LoadOptions
from runtime_min.shared_memory import is_shareable, round_up

FORMAT = fmt.ARTIFACT_FORMATS["gpu"]
HOST_IMPORT = "VK_EXT_external_memory_host"
TYPE_NAMES = {0: "other", 1: "integrated", 2: "discrete", 3: "virtual", 4: "cpu"}
TYPE_RANK = {2: 0, 1: 1, 3: 2, 4: 3, 0: 4}  # preference, lower first: discrete, integrated, virtual, CPU, other
FENCE_TIMEOUT_NS = 30 * 10**9
MAX_LEASED = 8  # staging sets whose outputs may be out as views at once; beyond, outputs are copied
IMPORT_CACHE = 8  # imported host arrays kept (with a reference, so their memory cannot move)
SPIRV_MAGIC, OP_DECORATE, DECORATION_BINDING, DECORATION_SET = 0x07230203, 71, 33, 34


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
        raise BackendUnavailable(
            f"no Vulkan device matches {wanted!r} (have: {', '.join(p.deviceName for p in props)}); "
            "set vulkan_device (RAGC_VULKAN_DEVICE) to an index or a name substring"
        )
    return devices[min(range(len(devices)), key=lambda i: (TYPE_RANK.get(props[i].deviceType, 9), i))]


def spirv_bindings(code: bytes, where: str) -> set[int]:
    """The storage bindings a SPIR-V module declares (all must be in set 0); refuses what is not SPIR-V."""
    words = np.frombuffer(code, "<u4") if len(code) % 4 == 0 and len(code) >= 20 else np.zeros(0, "<u4")
    if not words.size or int(words[0]) != SPIRV_MAGIC:
        raise fmt.bad(where, "a kernel file is not SPIR-V")
    bindings, i = set(), 5
    while i < words.size:
        count, opcode = int(words[i]) >> 16, int(words[i]) & 0xFFFF
        if count == 0 or i + count > words.size:
            raise fmt.bad(where, "a kernel file is truncated SPIR-V")
        if opcode == OP_DECORATE and count >= 4 and int(words[i + 2]) in (DECORATION_BINDING, DECORATION_SET):
            if int(words[i + 2]) == DECORATION_SET and int(words[i + 3]) != 0:
                raise fmt.bad(where, "a kernel uses a descriptor set other than 0")
            if int(words[i + 2]) == DECORATION_BINDING:
                bindings.add(int(words[i + 3]))
        i += count
    return bindings


class Device:
    """One physical device opened: instance, logical device, compute queue, command pool, pipeline cache."""

    def __init__(self, vk: Any, wanted: str | None) -> None:
        self.vk = vk
        app = vk.VkApplicationInfo(pApplicationName="ragc", apiVersion=vk.VK_MAKE_VERSION(1, 2, 0))
        info = vk.VkInstanceCreateInfo(pApplicationInfo=app)
        try:
            self.instance = vk.vkCreateInstance(info, None)
        except vk.VkError as exc:
            raise BackendUnavailable(f"no Vulkan driver ({type(exc).__name__}); install a Vulkan ICD") from exc
        try:
            self._open(wanted)
        except BaseException:
            vk.vkDestroyInstance(self.instance, None)
            raise

    def _open(self, wanted: str | None) -> None:
        vk = self.vk
        try:
            devices = list(vk.vkEnumeratePhysicalDevices(self.instance))
        except vk.VkError as exc:
            raise BackendUnavailable(f"Vulkan cannot list devices ({type(exc).__name__}); check the driver") from exc
        if not devices:
            raise BackendUnavailable("Vulkan found no physical device; install a driver (e.g. mesa-vulkan-drivers)")
        self.physical = pick_device(vk, devices, wanted)
        self.props = vk.vkGetPhysicalDeviceProperties(self.physical)
        self.memory = vk.vkGetPhysicalDeviceMemoryProperties(self.physical)
        families = vk.vkGetPhysicalDeviceQueueFamilyProperties(self.physical)
        compute = [i for i, f in enumerate(families) if f.queueFlags & vk.VK_QUEUE_COMPUTE_BIT]
        if not compute:
            raise BackendUnavailable(f"{self.props.deviceName} has no compute queue; pick another device")
        self.family = compute[0]
        self.timestamp_bits = families[self.family].timestampValidBits
        self.extensions = sorted(e.extensionName for e in vk.vkEnumerateDeviceExtensionProperties(self.physical, None))
        self.device = self._create_device()
        self.queue = vk.vkGetDeviceQueue(self.device, self.family, 0)
        pool = vk.VkCommandPoolCreateInfo(
            queueFamilyIndex=self.family, flags=vk.VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT
        )
        self.pool = vk.vkCreateCommandPool(self.device, pool, None)
        self.cache_file = _pipeline_cache_file(self.props)
        self.pipeline_cache = self._load_pipeline_cache()
        self._submit_lock = threading.Lock()

    def _create_device(self) -> Any:
        """Every supported core and storage-width feature on (8/16-bit, int64, robust buffer access)."""
        vk, ffi = self.vk, self.vk.ffi
        f8 = ffi.new("VkPhysicalDevice8BitStorageFeatures*")
        f8.sType = vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES
        f16 = ffi.new("VkPhysicalDevice16BitStorageFeatures*")
        f16.sType = vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES
        names = [e for e in ("VK_KHR_8bit_storage", HOST_IMPORT) if e in self.extensions]
        if "VK_KHR_8bit_storage" in names or vk.VK_VERSION_MINOR(self.props.apiVersion) >= 2:
            f16.pNext = f8
        features = ffi.new("VkPhysicalDeviceFeatures2*")
        features.sType = vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2
        features.pNext = f16
        vk.vkGetPhysicalDeviceFeatures2(self.physical, features)
        priority = ffi.new("float[]", [1.0])
        queue_info = vk.VkDeviceQueueCreateInfo(queueFamilyIndex=self.family, queueCount=1, pQueuePriorities=priority)
        ext_names = [ffi.new("char[]", n.encode()) for n in names]
        ext_array = ffi.new("char*[]", ext_names)
        info = vk.VkDeviceCreateInfo(
            pNext=features,
            queueCreateInfoCount=1,
            pQueueCreateInfos=[queue_info],
            enabledExtensionCount=len(names),
            ppEnabledExtensionNames=ext_array if names else None,
        )
        try:
            return vk.vkCreateDevice(self.physical, info, None)
        except vk.VkError as exc:
            raise BackendUnavailable(f"cannot open {self.props.deviceName}: {type(exc).__name__}") from exc

    def _load_pipeline_cache(self) -> Any:
        vk = self.vk
        data = b""
        try:
            data = self.cache_file.read_bytes()
        except OSError:
            pass
        blob = vk.ffi.new("char[]", data) if data else None
        info = vk.VkPipelineCacheCreateInfo(initialDataSize=len(data), pInitialData=blob)
        try:
            return vk.vkCreatePipelineCache(self.device, info, None)
        except vk.VkError:  # a stale or foreign cache file: start empty
            return vk.vkCreatePipelineCache(self.device, vk.VkPipelineCacheCreateInfo(), None)

    def save_pipeline_cache(self) -> None:
        """Write the pipeline cache atomically; an unwritable cache folder is not an error."""
        vk, ffi = self.vk, self.vk.ffi
        size = ffi.new("size_t*")
        if vk.lib.vkGetPipelineCacheData(self.device, self.pipeline_cache, size, ffi.NULL) != vk.VK_SUCCESS:
            return
        data = ffi.new("char[]", size[0])
        if vk.lib.vkGetPipelineCacheData(self.device, self.pipeline_cache, size, data) != vk.VK_SUCCESS:
            return
        try:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.cache_file.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(ffi.buffer(data, size[0]))
            os.replace(tmp, self.cache_file)
        except OSError:
            pass

    def command_buffer(self) -> Any:
        vk = self.vk
        info = vk.VkCommandBufferAllocateInfo(
            commandPool=self.pool, level=vk.VK_COMMAND_BUFFER_LEVEL_PRIMARY, commandBufferCount=1
        )
        return vk.vkAllocateCommandBuffers(self.device, info)[0]

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
            raise DeviceFailure(
                f"{self.props.deviceName} failed a submission ({type(exc).__name__}); reload the plan"
            ) from exc
        if status == vk.VK_TIMEOUT:
            raise DeviceFailure(f"{self.props.deviceName} did not finish a partition in {FENCE_TIMEOUT_NS // 10**9} s")

    def one_shot(self, record: Any) -> None:
        """Record commands with `record(cmd)` into a temporary command buffer, submit them and wait."""
        vk = self.vk
        cmd = self.command_buffer()
        vk.vkBeginCommandBuffer(cmd, vk.VkCommandBufferBeginInfo(flags=vk.VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT))
        record(cmd)
        vk.vkEndCommandBuffer(cmd)
        fence = vk.vkCreateFence(self.device, vk.VkFenceCreateInfo(), None)
        try:
            self.submit([cmd], fence)
        finally:
            vk.vkDestroyFence(self.device, fence, None)
            vk.vkFreeCommandBuffers(self.device, self.pool, 1, [cmd])

    def close(self) -> None:
        vk = self.vk
        vk.vkDeviceWaitIdle(self.device)
        self.save_pipeline_cache()
        vk.vkDestroyPipelineCache(self.device, self.pipeline_cache, None)
        vk.vkDestroyCommandPool(self.device, self.pool, None)

    def destroy(self) -> None:
        self.vk.vkDestroyDevice(self.device, None)
        self.vk.vkDestroyInstance(self.instance, None)


def _pipeline_cache_file(props: Any) -> Path:
    uuid = bytes(props.pipelineCacheUUID).hex()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ragc" / "vulkan" / f"{props.vendorID:04x}-{props.deviceID:04x}-{props.driverVersion:x}-{uuid}.bin"


class Buffer:
    """A VkBuffer bound to its own memory; `mapped` is a uint8 view of it when host-visible and mapped."""

    def __init__(self, handle: Any, memory: Any, size: int, mapped: np.ndarray | None) -> None:
        self.handle, self.memory, self.size, self.mapped = handle, memory, size, mapped


class Allocator:
    """Buffers of the three kinds the backend uses: "host" (coherent, cached if possible), "device" (device-local)
    and "shared" (device-local and host-visible: DeviceFailure where no memory type is both)."""

    def __init__(self, device: Device) -> None:
        self.dev, self.vk = device, device.vk
        self._lock = threading.Lock()
        self._pending = 0  # buffers kept alive for views still held by the caller
        self._closing = False

    def memory_type(self, bits: int, required: int, preferred: int = 0) -> int:
        types = self.dev.memory.memoryTypes
        candidates = [
            i
            for i in range(self.dev.memory.memoryTypeCount)
            if bits & (1 << i) and types[i].propertyFlags & required == required
        ]
        if not candidates:
            raise DeviceFailure(f"{self.dev.props.deviceName} has no memory type with flags {required:#x}")
        return next((i for i in candidates if types[i].propertyFlags & preferred == preferred), candidates[0])

    def buffer(self, size: int, usage: int, kind: str) -> Buffer:
        vk, device = self.vk, self.dev.device
        info = vk.VkBufferCreateInfo(
            size=max(size, fmt.GPU_ALIGN), usage=usage, sharingMode=vk.VK_SHARING_MODE_EXCLUSIVE
        )
        handle = vk.vkCreateBuffer(device, info, None)
        req = vk.vkGetBufferMemoryRequirements(device, handle)
        coherent = vk.VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | vk.VK_MEMORY_PROPERTY_HOST_COHERENT_BIT
        local = vk.VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT
        required = {"host": coherent, "device": local, "shared": local | coherent}[kind]
        try:
            index = self.memory_type(
                req.memoryTypeBits, required, vk.VK_MEMORY_PROPERTY_HOST_CACHED_BIT if kind == "host" else 0
            )
            memory = vk.vkAllocateMemory(
                device, vk.VkMemoryAllocateInfo(allocationSize=req.size, memoryTypeIndex=index), None
            )
        except (DeviceFailure, vk.VkError) as exc:
            vk.vkDestroyBuffer(device, handle, None)
            if isinstance(exc, DeviceFailure):
                raise
            raise DeviceFailure(f"out of GPU memory allocating {size} bytes; use a smaller model or batch") from exc
        vk.vkBindBufferMemory(device, handle, memory, 0)
        mapped = None
        if kind != "device":
            mapped = np.frombuffer(vk.vkMapMemory(device, memory, 0, max(size, fmt.GPU_ALIGN), 0), np.uint8)
        return Buffer(handle, memory, size, mapped)

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
            self._closing = True
            now = self._pending == 0
        if now:
            self.dev.destroy()


class Kernel:
    """One SPIR-V module as a compute pipeline with `bindings` storage buffers at set 0."""

    def __init__(self, dev: Device, code: bytes, bindings: int, name: str) -> None:
        vk, device = dev.vk, dev.device
        self.dev, self.bindings = dev, bindings
        self.module = vk.vkCreateShaderModule(device, vk.VkShaderModuleCreateInfo(codeSize=len(code), pCode=code), None)
        slots = [
            vk.VkDescriptorSetLayoutBinding(
                binding=i,
                descriptorType=vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                descriptorCount=1,
                stageFlags=vk.VK_SHADER_STAGE_COMPUTE_BIT,
            )
            for i in range(bindings)
        ]
        self.set_layout = vk.vkCreateDescriptorSetLayout(
            device, vk.VkDescriptorSetLayoutCreateInfo(bindingCount=len(slots), pBindings=slots), None
        )
        layouts = vk.ffi.new("VkDescriptorSetLayout[]", [self.set_layout])
        self.layout = vk.vkCreatePipelineLayout(
            device, vk.VkPipelineLayoutCreateInfo(setLayoutCount=1, pSetLayouts=layouts), None
        )
        entry = vk.ffi.new("char[]", b"main")
        stage = vk.VkPipelineShaderStageCreateInfo(
            stage=vk.VK_SHADER_STAGE_COMPUTE_BIT, module=self.module, pName=entry
        )
        info = vk.VkComputePipelineCreateInfo(stage=stage, layout=self.layout)
        try:
            self.pipeline = vk.vkCreateComputePipelines(device, dev.pipeline_cache, 1, [info], None)[0]
        except vk.VkError as exc:
            self.pipeline = None
            self.close()
            raise BackendUnavailable(
                f"{dev.props.deviceName} rejected kernel {name} ({type(exc).__name__}); it may lack a storage feature"
            ) from exc

    def close(self) -> None:
        vk, device = self.dev.vk, self.dev.device
        if self.pipeline is not None:
            vk.vkDestroyPipeline(device, self.pipeline, None)
        vk.vkDestroyPipelineLayout(device, self.layout, None)
        vk.vkDestroyDescriptorSetLayout(device, self.set_layout, None)
        vk.vkDestroyShaderModule(device, self.module, None)


class Lease:
    """Owner of the numpy views handed out from one staging set for one run (exposes its memory to numpy)."""

    def __init__(self, raw: np.ndarray) -> None:
        self.__array_interface__ = raw.__array_interface__
        self._raw = raw


class HostImports:
    """Host arrays imported as transfer-source buffers through VK_EXT_external_memory_host, cached by address; the
    cache holds each array, so its memory stays allocated (and in place) while Vulkan may read it."""

    def __init__(self, alloc: Allocator) -> None:
        dev, vk, ffi = alloc.dev, alloc.vk, alloc.vk.ffi
        self.alloc = alloc
        host = ffi.new("VkPhysicalDeviceExternalMemoryHostPropertiesEXT*")
        host.sType = vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_MEMORY_HOST_PROPERTIES_EXT
        props = ffi.new("VkPhysicalDeviceProperties2*")
        props.sType = vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2
        props.pNext = host
        vk.vkGetPhysicalDeviceProperties2(dev.physical, props)
        self.align = int(host.minImportedHostPointerAlignment)
        self._properties = vk.vkGetDeviceProcAddr(dev.device, "vkGetMemoryHostPointerPropertiesEXT")
        self._cache: OrderedDict[tuple[int, int], tuple[np.ndarray, Buffer]] = OrderedDict()

    def buffer(self, array: np.ndarray) -> Any | None:
        """A VkBuffer over `array`'s own memory, or None when it cannot be imported (alignment, driver refusal)."""
        if not is_shareable(array, self.align):
            return None
        key = (array.ctypes.data, array.nbytes)
        if key not in self._cache:
            imported = self._import(array)
            if imported is None:
                return None
            self._cache[key] = (array, imported)
            while len(self._cache) > IMPORT_CACHE:
                self.alloc.free(self._cache.popitem(last=False)[1][1])
        self._cache.move_to_end(key)
        return self._cache[key][1].handle

    def _import(self, array: np.ndarray) -> Buffer | None:
        vk, ffi, device = self.alloc.vk, self.alloc.vk.ffi, self.alloc.dev.device
        handle_type = vk.VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT
        size = round_up(array.nbytes, self.align)
        pointer = ffi.cast("void*", array.ctypes.data)
        try:
            bits = self._properties(device, handle_type, pointer).memoryTypeBits
        except vk.VkError:
            return None
        external = vk.VkExternalMemoryBufferCreateInfo(handleTypes=handle_type)
        info = vk.VkBufferCreateInfo(
            pNext=external,
            size=size,
            usage=vk.VK_BUFFER_USAGE_TRANSFER_SRC_BIT,
            sharingMode=vk.VK_SHARING_MODE_EXCLUSIVE,
        )
        buf = vk.vkCreateBuffer(device, info, None)
        req = vk.vkGetBufferMemoryRequirements(device, buf)
        types = [i for i in range(self.alloc.dev.memory.memoryTypeCount) if bits & req.memoryTypeBits & (1 << i)]
        source = vk.VkImportMemoryHostPointerInfoEXT(handleType=handle_type, pHostPointer=pointer)
        alloc = vk.VkMemoryAllocateInfo(pNext=source, allocationSize=size, memoryTypeIndex=types[0] if types else 0)
        try:
            if not types:
                raise vk.VkError()
            memory = vk.vkAllocateMemory(device, alloc, None)
        except vk.VkError:
            vk.vkDestroyBuffer(device, buf, None)
            return None
        vk.vkBindBufferMemory(device, buf, memory, 0)
        return Buffer(buf, memory, size, None)

    def close(self) -> None:
        for _, buf in self._cache.values():
            self.alloc.free(buf)
        self._cache.clear()


class IoSet:
    """One host-visible staging buffer (every input and output at its io offset) with the command buffers that
    copy its inputs in and its outputs out; `lease` is the weak reference to the views last handed out from it."""

    def __init__(self, buffer: Buffer, copy_in: Any, copy_out: Any) -> None:
        self.buffer, self.copy_in, self.copy_out = buffer, copy_in, copy_out
        self.lease: Any = None

    def free(self) -> bool:
        return self.lease is None or self.lease() is None


class VulkanExecutable(Executable):
    """One GPU partition: program checked, weights uploaded, pipelines built, dispatches recorded, once."""

    def __init__(self, backend: VulkanBackend, partition: Partition, bundle: Bundle) -> None:
        self.dev, self.alloc = backend.dev, backend.alloc
        self.where = f"partition {partition.id} ({partition.artifact.main})"
        self.zero_copy = backend.options.zero_copy
        self.stats = CopyStats()
        self._timings: list[StepTiming] = []
        self._closed = False
        self.kernels: dict[str, Kernel] = {}
        self.io_sets: list[IoSet] = []  # io_sets[0] is private (its outputs are copied); the others are leased
        self.buffers: list[Buffer] = []
        self.desc_pool = self.query_pool = self.fence = self.cmd = self.upload_cmd = None
        self.imports: HostImports | None = None
        self.arena_view: np.ndarray | None = None
        try:
            self.program = GpuProgram(bundle.read_json(partition.artifact.main, self.where), partition, self.where)
            self._build(backend, bundle)
        except BaseException:
            self.close()
            raise

    def _build(self, backend: VulkanBackend, bundle: Bundle) -> None:
        vk, program = self.dev.vk, self.program
        usage = (
            vk.VK_BUFFER_USAGE_STORAGE_BUFFER_BIT
            | vk.VK_BUFFER_USAGE_TRANSFER_SRC_BIT
            | vk.VK_BUFFER_USAGE_TRANSFER_DST_BIT
        )
        self.weights = self._buffer(program.weights_bytes, usage, "device")
        self.arena = self._arena(program.arena_bytes, usage)
        self._upload_weights(bundle)
        if self.zero_copy and HOST_IMPORT in self.dev.extensions and program.inputs:
            self.imports = HostImports(self.alloc)
        for d in program.dispatches:
            if d["kernel"] not in self.kernels:
                code = bundle.path(d["kernel"], self.where).read_bytes()
                if max(spirv_bindings(code, self.where), default=-1) >= len(d["bindings"]):
                    raise fmt.bad(self.where, f"kernel {d['kernel']} reads more buffers than its dispatch binds")
                self.kernels[d["kernel"]] = Kernel(self.dev, code, len(d["bindings"]), d["kernel"])
            if len(d["bindings"]) != self.kernels[d["kernel"]].bindings:
                raise fmt.bad(self.where, f"kernel {d['kernel']} is bound with different buffer counts")
        self._descriptors()
        limits = self.dev.props.limits.maxComputeWorkGroupCount
        for d in program.dispatches:
            if any(g > limits[i] for i, g in enumerate(d["groups"])):
                raise fmt.bad(self.where, f"dispatch {d['label']!r} launches more workgroups than the device allows")
        if backend.options.timestamps and self.dev.timestamp_bits and program.dispatches:
            info = vk.VkQueryPoolCreateInfo(
                queryType=vk.VK_QUERY_TYPE_TIMESTAMP, queryCount=2 * len(program.dispatches)
            )
            self.query_pool = vk.vkCreateQueryPool(self.dev.device, info, None)
        self.fence = vk.vkCreateFence(self.dev.device, vk.VkFenceCreateInfo(), None)
        self.cmd = self.dev.command_buffer()
        self._record()
        self.io_sets.append(self._new_set())

    def _buffer(self, size: int, usage: int, kind: str) -> Buffer:
        buf = self.alloc.buffer(size, usage, kind)
        self.buffers.append(buf)
        return buf

    def _arena(self, nbytes: int, usage: int) -> Buffer:
        """Device-local; host-visible and mapped when the bridge is on and the device has such memory (then
        inputs are written straight into it)."""
        if self.zero_copy:
            try:
                arena = self._buffer(nbytes, usage, "shared")
            except DeviceFailure:  # no device-local host-visible memory type, or its heap (a BAR window) is full
                pass
            else:
                self.arena_view = arena.mapped
                return arena
        return self._buffer(nbytes, usage, "device")

    def _upload_weights(self, bundle: Bundle) -> None:
        """Every weight copied once from the mapped tensor store into staging, then by the GPU into place."""
        if not self.program.weights_bytes:
            return
        vk = self.dev.vk
        staging = self.alloc.buffer(self.program.weights_bytes, vk.VK_BUFFER_USAGE_TRANSFER_SRC_BIT, "host")
        try:
            for name, store_offset in self.program.weight_sources():
                t = self.program.tensors[name]
                staging.mapped[t["offset"] : t["offset"] + t["nbytes"]] = bundle.store.view(
                    store_offset, t["nbytes"], self.where
                )
            region = vk.VkBufferCopy(srcOffset=0, dstOffset=0, size=self.program.weights_bytes)
            self.dev.one_shot(lambda cmd: vk.vkCmdCopyBuffer(cmd, staging.handle, self.weights.handle, 1, [region]))
        finally:
            self.alloc.free(staging)

    def _descriptors(self) -> None:
        """One descriptor set per dispatch, each binding a tensor's range of the weights or arena buffer."""
        vk, device, dispatches = self.dev.vk, self.dev.device, self.program.dispatches
        total = max(1, sum(len(d["bindings"]) for d in dispatches))
        sizes = [vk.VkDescriptorPoolSize(type=vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, descriptorCount=total)]
        info = vk.VkDescriptorPoolCreateInfo(maxSets=max(1, len(dispatches)), poolSizeCount=1, pPoolSizes=sizes)
        self.desc_pool = vk.vkCreateDescriptorPool(device, info, None)
        self.descriptor_sets = []
        regions = {"weights": self.weights, "arena": self.arena}
        for d in dispatches:
            layouts = vk.ffi.new("VkDescriptorSetLayout[]", [self.kernels[d["kernel"]].set_layout])
            alloc = vk.VkDescriptorSetAllocateInfo(
                descriptorPool=self.desc_pool, descriptorSetCount=1, pSetLayouts=layouts
            )
            dset = vk.vkAllocateDescriptorSets(device, alloc)[0]
            tensors = [self.program.tensors[n] for n in d["bindings"]]
            infos = [
                vk.VkDescriptorBufferInfo(
                    buffer=regions[t["region"]].handle, offset=t["offset"], range=max(t["nbytes"], 4)
                )
                for t in tensors
            ]
            writes = [
                vk.VkWriteDescriptorSet(
                    dstSet=dset,
                    dstBinding=i,
                    descriptorCount=1,
                    descriptorType=vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                    pBufferInfo=[info],
                )
                for i, info in enumerate(infos)
            ]
            vk.vkUpdateDescriptorSets(device, len(writes), writes, 0, None)
            self.descriptor_sets.append(dset)

    def _barrier(self, cmd: Any, src: tuple[int, int], dst: tuple[int, int]) -> None:
        vk = self.dev.vk
        barrier = vk.VkMemoryBarrier(srcAccessMask=src[1], dstAccessMask=dst[1])
        vk.vkCmdPipelineBarrier(cmd, src[0], dst[0], 0, 1, [barrier], 0, None, 0, None)

    def _copies(self, cmd: Any, io: Any, names: list[str], to_device: bool, sources: dict | None = None) -> None:
        """Copy commands between staging buffer `io` and the arena; `sources` maps an input to an imported buffer
        (offset 0) that replaces staging as its source."""
        vk = self.dev.vk
        for name in names:
            t = self.program.tensors[name]
            host, io_off = (sources[name], 0) if sources and name in sources else (io, self.program.io_offsets[name])
            region = vk.VkBufferCopy(
                srcOffset=io_off if to_device else t["offset"],
                dstOffset=t["offset"] if to_device else io_off,
                size=t["nbytes"],
            )
            src, dst = (host, self.arena.handle) if to_device else (self.arena.handle, host)
            if t["nbytes"]:
                vk.vkCmdCopyBuffer(cmd, src, dst, 1, [region])

    def _record(self) -> None:
        """The dispatches of this partition, separated by barriers."""
        vk, cmd = self.dev.vk, self.cmd
        compute, transfer = vk.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, vk.VK_PIPELINE_STAGE_TRANSFER_BIT
        read, write = vk.VK_ACCESS_SHADER_READ_BIT, vk.VK_ACCESS_SHADER_WRITE_BIT
        vk.vkBeginCommandBuffer(cmd, vk.VkCommandBufferBeginInfo())
        if self.query_pool is not None:
            vk.vkCmdResetQueryPool(cmd, self.query_pool, 0, 2 * len(self.program.dispatches))
        after = (compute | transfer, read | write | vk.VK_ACCESS_TRANSFER_READ_BIT)
        self._barrier(cmd, (transfer, vk.VK_ACCESS_TRANSFER_WRITE_BIT), after)
        for i, (d, dset) in enumerate(zip(self.program.dispatches, self.descriptor_sets, strict=True)):
            kernel = self.kernels[d["kernel"]]
            vk.vkCmdBindPipeline(cmd, vk.VK_PIPELINE_BIND_POINT_COMPUTE, kernel.pipeline)
            sets = vk.ffi.new("VkDescriptorSet[]", [dset])
            vk.vkCmdBindDescriptorSets(cmd, vk.VK_PIPELINE_BIND_POINT_COMPUTE, kernel.layout, 0, 1, sets, 0, None)
            if self.query_pool is not None:
                vk.vkCmdWriteTimestamp(cmd, compute, self.query_pool, 2 * i)
            vk.vkCmdDispatch(cmd, *d["groups"])
            if self.query_pool is not None:
                vk.vkCmdWriteTimestamp(cmd, compute, self.query_pool, 2 * i + 1)
            self._barrier(cmd, (compute, write), after)
        vk.vkEndCommandBuffer(cmd)

    def _new_set(self) -> IoSet:
        """A staging buffer with its pre-recorded copy-in (only when inputs go through staging) and copy-out."""
        vk, program = self.dev.vk, self.program
        usage = vk.VK_BUFFER_USAGE_TRANSFER_SRC_BIT | vk.VK_BUFFER_USAGE_TRANSFER_DST_BIT
        buf = self.alloc.buffer(program.io_bytes, usage, "host")
        io = IoSet(buf, None, self.dev.command_buffer())
        vk.vkBeginCommandBuffer(io.copy_out, vk.VkCommandBufferBeginInfo())
        self._copies(io.copy_out, buf.handle, program.outputs, to_device=False)
        host = (vk.VK_PIPELINE_STAGE_HOST_BIT, vk.VK_ACCESS_HOST_READ_BIT)
        self._barrier(io.copy_out, (vk.VK_PIPELINE_STAGE_TRANSFER_BIT, vk.VK_ACCESS_TRANSFER_WRITE_BIT), host)
        vk.vkEndCommandBuffer(io.copy_out)
        if self.arena_view is None and program.inputs:
            io.copy_in = self.dev.command_buffer()
            vk.vkBeginCommandBuffer(io.copy_in, vk.VkCommandBufferBeginInfo())
            self._copies(io.copy_in, buf.handle, program.inputs, to_device=True)
            vk.vkEndCommandBuffer(io.copy_in)
        return io

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._closed:
            raise DeviceFailure("this Vulkan executable was closed; load the plan again")
        self.program.check_feeds(feeds)
        io, leased = self._take_set()
        self.dev.submit([*self._send_inputs(feeds, io), self.cmd, io.copy_out], self.fence)
        self.stats.runs += 1
        layout = [(name, self.program.io_offsets[name], self.program.tensors[name]) for name in self.program.outputs]
        for _, _, t in layout:
            self.stats.count(1 if leased else 2, t["nbytes"], avoided=1 if leased else 0)
        raw = io.buffer.mapped
        if leased:
            lease = Lease(raw)
            raw = np.asarray(lease)
            io.lease = weakref.ref(lease)
        outputs = {name: raw[off : off + t["nbytes"]].view(t["dtype"]).reshape(t["shape"]) for name, off, t in layout}
        if not leased:
            outputs = {name: value.copy() for name, value in outputs.items()}
        if self.query_pool is not None:
            self._timings = self._read_timestamps()
        return outputs

    def _take_set(self) -> tuple[IoSet, bool]:
        """A staging set no live output view points into (a new one while fewer than MAX_LEASED exist), and
        whether its outputs may be handed out as views; else the private set, whose outputs are copied."""
        if not self.zero_copy:
            return self.io_sets[0], False
        for io in self.io_sets[1:]:
            if io.free():
                return io, True
        if len(self.io_sets) <= MAX_LEASED:
            self.io_sets.append(self._new_set())
            return self.io_sets[-1], True
        return self.io_sets[0], False

    def _send_inputs(self, feeds: dict[str, np.ndarray], io: IoSet) -> list[Any]:
        """Put every input where the GPU reads it; returns the command buffers that must run before the dispatches.
        Imported host memory is copied by the GPU straight from the caller's array; a mapped arena is written
        directly; anything else goes through staging (host copy, then GPU copy)."""
        imported, staged = {}, False
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
                target, skipped, staged = io.buffer.mapped[off : off + t["nbytes"]], 0, True
            target[:] = x.reshape(-1).view(np.uint8)
            self.stats.count(2 - skipped, t["nbytes"], avoided=skipped)
        if not imported:
            return [io.copy_in] if staged else []
        vk = self.dev.vk
        if self.upload_cmd is None:
            self.upload_cmd = self.dev.command_buffer()
        vk.vkResetCommandBuffer(self.upload_cmd, 0)
        vk.vkBeginCommandBuffer(
            self.upload_cmd, vk.VkCommandBufferBeginInfo(flags=vk.VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT)
        )
        names = [n for n in self.program.inputs if n in imported or staged]
        self._copies(self.upload_cmd, io.buffer.handle, names, to_device=True, sources=imported)
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
        mask = (1 << min(self.dev.timestamp_bits, 64)) - 1
        period = self.dev.props.limits.timestampPeriod
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
        if self.fence is not None:
            vk.vkDestroyFence(device, self.fence, None)
        for cmd in [self.cmd, self.upload_cmd, *(c for io in self.io_sets for c in (io.copy_in, io.copy_out))]:
            if cmd is not None:
                vk.vkFreeCommandBuffers(device, self.dev.pool, 1, [cmd])
        if self.query_pool is not None:
            vk.vkDestroyQueryPool(device, self.query_pool, None)
        if self.desc_pool is not None:
            vk.vkDestroyDescriptorPool(device, self.desc_pool, None)
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
        self.alloc = Allocator(self.dev)
        vk, dev = self.dev.vk, self.dev
        both = vk.VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT | vk.VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT
        types, heaps = dev.memory.memoryTypes, dev.memory.memoryHeaps
        # the device-local heap is host-visible and not across a bus: a discrete card's resizable BAR does not count
        self.unified_memory = dev.props.deviceType != vk.VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU and any(
            types[i].propertyFlags & both == both and heaps[types[i].heapIndex].size > 2**30
            for i in range(dev.memory.memoryTypeCount)
        )
        self.has_external_memory_host = HOST_IMPORT in dev.extensions
        self.device_name = dev.props.deviceName
        self.device_type = TYPE_NAMES.get(dev.props.deviceType, "other")
        self._executables: list[VulkanExecutable] = []

    @classmethod
    def open(cls, options: LoadOptions) -> VulkanBackend:
        return cls(options)

    def describe(self) -> str:
        p, vk = self.dev.props, self.dev.vk
        api = f"{vk.VK_VERSION_MAJOR(p.apiVersion)}.{vk.VK_VERSION_MINOR(p.apiVersion)}"
        return f"{self.device_name} ({self.device_type}, Vulkan {api}, driver {p.driverVersion:#x}, vendor {p.vendorID:#x})"

    def prepare(self, partition: Partition, bundle: Bundle) -> VulkanExecutable:
        exe = VulkanExecutable(self, partition, bundle)
        self._executables.append(exe)
        return exe

    def close(self) -> None:
        for exe in self._executables:
            exe.close()
        self._executables.clear()
        if self.alloc is not None:
            self.alloc.close()
            self.alloc = None
