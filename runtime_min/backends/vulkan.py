"""The GPU backend: runs "spirv-v1" partitions through Vulkan (the `vulkan` cffi package, imported lazily).

Per partition, `prepare` uploads the weights once into device-local memory, builds every pipeline once, lays
the activations into one device-local arena and pre-records ONE command buffer: copy inputs in, the dispatches
with a barrier after each, copy outputs out. `run` fills host-visible staging, submits once and waits on a fence.

cffi trap (shared/DEVICE.md): the `vulkan` package does not keep nested structs, strings or arrays alive, so
every one of them is held in a local variable until the call that reads it has returned.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from runtime_min.backends.base import Backend, Executable, StepTiming
from runtime_min.errors import BackendUnavailable, BundleError, DeviceFailure, InputError

FORMAT = "spirv-v1"
DEVICE_ENV = "RAGC_VULKAN_DEVICE"
ALIGN = 256
FENCE_TIMEOUT_NS = 600 * 10**9
# physical device type -> preference (lower first): discrete, integrated, virtual, CPU, other
TYPE_RANK = {2: 0, 1: 1, 3: 2, 4: 3, 0: 4}
TYPE_NAMES = {0: "other", 1: "integrated", 2: "discrete", 3: "virtual", 4: "cpu"}


def _import_vulkan() -> Any:
    try:
        import vulkan
    except ImportError as exc:
        raise BackendUnavailable(f"vulkan package not installed ({exc}); pip install vulkan") from exc
    except OSError as exc:
        raise BackendUnavailable(f"Vulkan loader missing ({exc}); install libvulkan1 and a driver") from exc
    return vulkan


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _pick_device(vk: Any, devices: list, wanted: str | None) -> Any:
    """The physical device named by `wanted` (index or name substring), else the most capable kind present."""
    props = [vk.vkGetPhysicalDeviceProperties(d) for d in devices]
    names = [p.deviceName for p in props]
    if wanted:
        if wanted.isdigit() and int(wanted) < len(devices):
            return devices[int(wanted)]
        for device, name in zip(devices, names, strict=True):
            if wanted.lower() in name.lower():
                return device
        raise BackendUnavailable(
            f"no Vulkan device matches {DEVICE_ENV}={wanted!r} (have: {', '.join(names)}); "
            "set it to an index or a name substring"
        )
    best = min(range(len(devices)), key=lambda i: (TYPE_RANK.get(props[i].deviceType, 9), i))
    return devices[best]


class _Context:
    """Instance, device, queue and command pool of one physical device, plus buffer helpers."""

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
        self.physical = _pick_device(vk, devices, wanted)
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
        pool_info = vk.VkCommandPoolCreateInfo(
            queueFamilyIndex=self.family, flags=vk.VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT
        )
        self.pool = vk.vkCreateCommandPool(self.device, pool_info, None)

    def _create_device(self) -> Any:
        """A device with every supported feature of the storage-width sets on (8/16-bit, int64), robustness off."""
        vk, ffi = self.vk, self.vk.ffi
        f8 = ffi.new("VkPhysicalDevice8BitStorageFeatures*")
        f8.sType = vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES
        f16 = ffi.new("VkPhysicalDevice16BitStorageFeatures*")
        f16.sType = vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES
        names = [e for e in ("VK_KHR_8bit_storage",) if e in self.extensions]
        if names or vk.VK_VERSION_MINOR(self.props.apiVersion) >= 2:
            f16.pNext = f8
        features = ffi.new("VkPhysicalDeviceFeatures2*")
        features.sType = vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2
        features.pNext = f16
        vk.vkGetPhysicalDeviceFeatures2(self.physical, features)
        features.features.robustBufferAccess = 0
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

    def memory_type(self, bits: int, required: int, preferred: int = 0) -> int:
        candidates = [
            i
            for i in range(self.memory.memoryTypeCount)
            if bits & (1 << i) and self.memory.memoryTypes[i].propertyFlags & required == required
        ]
        if not candidates:
            raise DeviceFailure(f"{self.props.deviceName} has no memory type with flags {required:#x}")
        best = [i for i in candidates if self.memory.memoryTypes[i].propertyFlags & preferred == preferred]
        return (best or candidates)[0]

    def buffer(self, size: int, usage: int, host: bool) -> tuple[Any, Any]:
        """A buffer bound to fresh memory: host-visible coherent (cached if possible) or device-local."""
        vk = self.vk
        info = vk.VkBufferCreateInfo(size=max(size, ALIGN), usage=usage, sharingMode=vk.VK_SHARING_MODE_EXCLUSIVE)
        buf = vk.vkCreateBuffer(self.device, info, None)
        req = vk.vkGetBufferMemoryRequirements(self.device, buf)
        if host:
            flags = vk.VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | vk.VK_MEMORY_PROPERTY_HOST_COHERENT_BIT
            index = self.memory_type(req.memoryTypeBits, flags, vk.VK_MEMORY_PROPERTY_HOST_CACHED_BIT)
        else:
            index = self.memory_type(req.memoryTypeBits, vk.VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT)
        try:
            mem = vk.vkAllocateMemory(
                self.device, vk.VkMemoryAllocateInfo(allocationSize=req.size, memoryTypeIndex=index), None
            )
        except vk.VkError as exc:
            vk.vkDestroyBuffer(self.device, buf, None)
            raise DeviceFailure(f"out of GPU memory allocating {size} bytes; use a smaller model or batch") from exc
        vk.vkBindBufferMemory(self.device, buf, mem, 0)
        return buf, mem

    def free(self, buf: Any, mem: Any) -> None:
        self.vk.vkDestroyBuffer(self.device, buf, None)
        self.vk.vkFreeMemory(self.device, mem, None)

    def command_buffer(self) -> Any:
        info = self.vk.VkCommandBufferAllocateInfo(
            commandPool=self.pool, level=self.vk.VK_COMMAND_BUFFER_LEVEL_PRIMARY, commandBufferCount=1
        )
        return self.vk.vkAllocateCommandBuffers(self.device, info)[0]

    def submit(self, cmd: Any, fence: Any) -> None:
        """Submit one recorded command buffer and wait for it (cffi releases the GIL while waiting)."""
        vk = self.vk
        cmds = vk.ffi.new("VkCommandBuffer[]", [cmd])
        submit = vk.VkSubmitInfo(commandBufferCount=1, pCommandBuffers=cmds)
        try:
            vk.vkResetFences(self.device, 1, [fence])
            vk.vkQueueSubmit(self.queue, 1, [submit], fence)
            vk.vkWaitForFences(self.device, 1, [fence], vk.VK_TRUE, FENCE_TIMEOUT_NS)
        except vk.VkError as exc:
            raise DeviceFailure(
                f"{self.props.deviceName} failed a submission ({type(exc).__name__}); reload the plan"
            ) from exc

    def upload(self, dst: Any, data: bytes) -> None:
        """Copy bytes into a device-local buffer through a temporary staging buffer."""
        vk = self.vk
        staging, mem = self.buffer(len(data), vk.VK_BUFFER_USAGE_TRANSFER_SRC_BIT, host=True)
        view = vk.vkMapMemory(self.device, mem, 0, len(data), 0)
        view[:] = data
        vk.vkUnmapMemory(self.device, mem)
        cmd = self.command_buffer()
        vk.vkBeginCommandBuffer(cmd, vk.VkCommandBufferBeginInfo(flags=vk.VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT))
        vk.vkCmdCopyBuffer(cmd, staging, dst, 1, [vk.VkBufferCopy(srcOffset=0, dstOffset=0, size=len(data))])
        vk.vkEndCommandBuffer(cmd)
        fence = vk.vkCreateFence(self.device, vk.VkFenceCreateInfo(), None)
        try:
            self.submit(cmd, fence)
        finally:
            vk.vkDestroyFence(self.device, fence, None)
            vk.vkFreeCommandBuffers(self.device, self.pool, 1, [cmd])
            self.free(staging, mem)

    def close(self) -> None:
        vk = self.vk
        vk.vkDeviceWaitIdle(self.device)
        vk.vkDestroyCommandPool(self.device, self.pool, None)
        vk.vkDestroyDevice(self.device, None)
        vk.vkDestroyInstance(self.instance, None)


class VulkanBackend(Backend):
    """The GPU processor through Vulkan; `options`: "timestamps" (bool), "vulkan_device" (index or name)."""

    device = "gpu"

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = dict(options or {})
        self._ctx = _Context(_import_vulkan(), self.options.get("vulkan_device") or os.environ.get(DEVICE_ENV))
        vk, ctx = self._ctx.vk, self._ctx
        both = vk.VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT | vk.VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT
        heaps = ctx.memory.memoryHeaps
        # the device-local heap is host-visible and not across a bus: a discrete card's resizable BAR does not count
        self.unified_memory = ctx.props.deviceType != vk.VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU and any(
            ctx.memory.memoryTypes[i].propertyFlags & both == both
            and heaps[ctx.memory.memoryTypes[i].heapIndex].size > 2**30
            for i in range(ctx.memory.memoryTypeCount)
        )
        self.has_external_memory_host = "VK_EXT_external_memory_host" in ctx.extensions
        self.device_name = ctx.props.deviceName
        self.device_type = TYPE_NAMES.get(ctx.props.deviceType, "other")
        self._executables: list[_VulkanExecutable] = []

    @classmethod
    def open(cls, options: dict[str, Any]) -> VulkanBackend:
        return cls(options)

    def describe(self) -> str:
        p, vk = self._ctx.props, self._ctx.vk
        api = f"{vk.VK_VERSION_MAJOR(p.apiVersion)}.{vk.VK_VERSION_MINOR(p.apiVersion)}"
        driver = f"driver {p.driverVersion:#x}, vendor {p.vendorID:#x}"
        return f"{self.device_name} ({self.device_type}, Vulkan {api}, {driver})"

    def prepare(self, partition: dict[str, Any], bundle_dir: Path) -> Executable:
        artifact = partition.get("artifact", {})
        if artifact.get("format") != FORMAT:
            raise BundleError(
                f"partition {partition.get('id')} has format {artifact.get('format')!r}, the Vulkan "
                f"backend reads {FORMAT!r}; recompile the bundle"
            )
        path = Path(bundle_dir) / artifact["program"]
        try:
            program = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise BundleError(f"cannot read {path.name} ({exc}); recompile the bundle") from exc
        exe = _VulkanExecutable(self._ctx, program, Path(bundle_dir), bool(self.options.get("timestamps")))
        self._executables.append(exe)
        return exe

    def close(self) -> None:
        for exe in self._executables:
            exe.close()
        self._executables.clear()
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None


class _VulkanExecutable(Executable):
    def __init__(self, ctx: _Context, program: dict[str, Any], bundle_dir: Path, timestamps: bool) -> None:
        self.ctx = ctx
        self.program = program
        self.tensors = program["tensors"]
        self.dispatches = program["dispatches"]
        self._timings: list[StepTiming] = []
        self._closed = False
        self.regions: dict[str, tuple[Any, Any]] = {}
        self.pipelines: dict[str, tuple[Any, Any, Any, Any]] = {}
        self.io = self.desc_pool = self.query_pool = self.fence = self.cmd = None
        try:
            self._build(bundle_dir, timestamps)
        except BaseException:
            self.close()
            raise

    def _build(self, bundle_dir: Path, timestamps: bool) -> None:
        ctx, vk, program = self.ctx, self.ctx.vk, self.program
        storage = vk.VK_BUFFER_USAGE_STORAGE_BUFFER_BIT
        xfer = vk.VK_BUFFER_USAGE_TRANSFER_SRC_BIT | vk.VK_BUFFER_USAGE_TRANSFER_DST_BIT
        regions = program["regions"]
        weights = self._read(bundle_dir, regions["weights"]["file"])
        self.regions["weights"] = ctx.buffer(len(weights), storage | xfer, host=False)
        self.regions["arena"] = ctx.buffer(regions["arena"]["nbytes"], storage | xfer, host=False)
        if weights:
            ctx.upload(self.regions["weights"][0], weights)
        self.io_offsets: dict[str, int] = {}
        size = 0
        for name in program["inputs"] + program["outputs"]:
            self.io_offsets[name] = size
            size += _align(self.tensors[name]["nbytes"])
        self.io = ctx.buffer(size, xfer, host=True)
        self.io_view = np.frombuffer(vk.vkMapMemory(ctx.device, self.io[1], 0, max(size, ALIGN), 0), np.uint8)
        self._build_pipelines(bundle_dir)
        self._build_descriptors()
        if timestamps and ctx.timestamp_bits and self.dispatches:
            info = vk.VkQueryPoolCreateInfo(queryType=vk.VK_QUERY_TYPE_TIMESTAMP, queryCount=2 * len(self.dispatches))
            self.query_pool = vk.vkCreateQueryPool(ctx.device, info, None)
        self.fence = vk.vkCreateFence(ctx.device, vk.VkFenceCreateInfo(), None)
        self.cmd = ctx.command_buffer()
        self._record()

    @staticmethod
    def _read(bundle_dir: Path, name: str) -> bytes:
        try:
            return (bundle_dir / name).read_bytes()
        except OSError as exc:
            raise BundleError(f"missing {name} in {bundle_dir.name} ({exc.strerror}); recompile the bundle") from exc

    def _build_pipelines(self, bundle_dir: Path) -> None:
        """One shader module, set layout and pipeline per distinct kernel file, built once."""
        vk, dev = self.ctx.vk, self.ctx.device
        for d in self.dispatches:
            if d["kernel"] in self.pipelines:
                continue
            code = self._read(bundle_dir, d["kernel"])
            module = vk.vkCreateShaderModule(dev, vk.VkShaderModuleCreateInfo(codeSize=len(code), pCode=code), None)
            bindings = [
                vk.VkDescriptorSetLayoutBinding(
                    binding=i,
                    descriptorType=vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                    descriptorCount=1,
                    stageFlags=vk.VK_SHADER_STAGE_COMPUTE_BIT,
                )
                for i in range(len(d["bindings"]))
            ]
            set_info = vk.VkDescriptorSetLayoutCreateInfo(bindingCount=len(bindings), pBindings=bindings)
            set_layout = vk.vkCreateDescriptorSetLayout(dev, set_info, None)
            layouts = vk.ffi.new("VkDescriptorSetLayout[]", [set_layout])
            layout = vk.vkCreatePipelineLayout(
                dev, vk.VkPipelineLayoutCreateInfo(setLayoutCount=1, pSetLayouts=layouts), None
            )
            entry = vk.ffi.new("char[]", b"main")
            stage = vk.VkPipelineShaderStageCreateInfo(stage=vk.VK_SHADER_STAGE_COMPUTE_BIT, module=module, pName=entry)
            info = vk.VkComputePipelineCreateInfo(stage=stage, layout=layout)
            try:
                pipeline = vk.vkCreateComputePipelines(dev, None, 1, [info], None)[0]
            except vk.VkError as exc:
                raise BackendUnavailable(
                    f"{self.ctx.props.deviceName} rejected kernel {d['kernel']} "
                    f"({type(exc).__name__}); it may lack a storage feature"
                ) from exc
            self.pipelines[d["kernel"]] = (module, set_layout, layout, pipeline)

    def _build_descriptors(self) -> None:
        """One descriptor set per dispatch, each binding a tensor's range of the weights or arena buffer."""
        vk, dev = self.ctx.vk, self.ctx.device
        n = max(1, len(self.dispatches))
        total = max(1, sum(len(d["bindings"]) for d in self.dispatches))
        sizes = [vk.VkDescriptorPoolSize(type=vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, descriptorCount=total)]
        self.desc_pool = vk.vkCreateDescriptorPool(
            dev, vk.VkDescriptorPoolCreateInfo(maxSets=n, poolSizeCount=1, pPoolSizes=sizes), None
        )
        self.sets = []
        for d in self.dispatches:
            layouts = vk.ffi.new("VkDescriptorSetLayout[]", [self.pipelines[d["kernel"]][1]])
            alloc = vk.VkDescriptorSetAllocateInfo(
                descriptorPool=self.desc_pool, descriptorSetCount=1, pSetLayouts=layouts
            )
            dset = vk.vkAllocateDescriptorSets(dev, alloc)[0]
            infos = [
                vk.VkDescriptorBufferInfo(
                    buffer=self.regions[self.tensors[name]["region"]][0],
                    offset=self.tensors[name]["offset"],
                    range=self.tensors[name]["nbytes"],
                )
                for name in d["bindings"]
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
            vk.vkUpdateDescriptorSets(dev, len(writes), writes, 0, None)
            self.sets.append(dset)

    def _barrier(self, src_stage: int, src: int, dst_stage: int, dst: int) -> None:
        vk = self.ctx.vk
        barrier = vk.VkMemoryBarrier(srcAccessMask=src, dstAccessMask=dst)
        vk.vkCmdPipelineBarrier(self.cmd, src_stage, dst_stage, 0, 1, [barrier], 0, None, 0, None)

    def _copies(self, names: list[str], to_device: bool) -> None:
        vk = self.ctx.vk
        for name in names:
            t = self.tensors[name]
            device_buf = self.regions[t["region"]][0]
            io_off, dev_off = self.io_offsets[name], t["offset"]
            region = vk.VkBufferCopy(
                srcOffset=io_off if to_device else dev_off, dstOffset=dev_off if to_device else io_off, size=t["nbytes"]
            )
            src, dst = (self.io[0], device_buf) if to_device else (device_buf, self.io[0])
            vk.vkCmdCopyBuffer(self.cmd, src, dst, 1, [region])

    def _record(self) -> None:
        """The one command buffer of this partition: copy in, dispatches separated by barriers, copy out."""
        vk, cmd = self.ctx.vk, self.cmd
        compute, transfer = vk.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, vk.VK_PIPELINE_STAGE_TRANSFER_BIT
        read, write = vk.VK_ACCESS_SHADER_READ_BIT, vk.VK_ACCESS_SHADER_WRITE_BIT
        vk.vkBeginCommandBuffer(cmd, vk.VkCommandBufferBeginInfo())
        if self.query_pool is not None:
            vk.vkCmdResetQueryPool(cmd, self.query_pool, 0, 2 * len(self.dispatches))
        self._copies(self.program["inputs"], to_device=True)
        self._barrier(transfer, vk.VK_ACCESS_TRANSFER_WRITE_BIT, compute, read | write)
        for i, (d, dset) in enumerate(zip(self.dispatches, self.sets, strict=True)):
            _, _, layout, pipeline = self.pipelines[d["kernel"]]
            vk.vkCmdBindPipeline(cmd, vk.VK_PIPELINE_BIND_POINT_COMPUTE, pipeline)
            sets = vk.ffi.new("VkDescriptorSet[]", [dset])
            vk.vkCmdBindDescriptorSets(cmd, vk.VK_PIPELINE_BIND_POINT_COMPUTE, layout, 0, 1, sets, 0, None)
            if self.query_pool is not None:
                vk.vkCmdWriteTimestamp(cmd, compute, self.query_pool, 2 * i)
            vk.vkCmdDispatch(cmd, *d["groups"])
            if self.query_pool is not None:
                vk.vkCmdWriteTimestamp(cmd, compute, self.query_pool, 2 * i + 1)
            self._barrier(compute, write, compute | transfer, read | write | vk.VK_ACCESS_TRANSFER_READ_BIT)
        self._copies(self.program["outputs"], to_device=False)
        self._barrier(
            transfer, vk.VK_ACCESS_TRANSFER_WRITE_BIT, vk.VK_PIPELINE_STAGE_HOST_BIT, vk.VK_ACCESS_HOST_READ_BIT
        )
        vk.vkEndCommandBuffer(cmd)

    def _check(self, feeds: dict[str, np.ndarray]) -> None:
        for name in self.program["inputs"]:
            t = self.tensors[name]
            if name not in feeds:
                raise InputError(f"missing input {name!r} ({t['dtype']}{t['shape']}); pass it in the feeds")
            x = feeds[name]
            if str(x.dtype) != t["dtype"] or list(x.shape) != t["shape"]:
                raise InputError(
                    f"input {name!r} is {x.dtype}{list(x.shape)}, expected {t['dtype']}{t['shape']}; convert it first"
                )

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._closed:
            raise DeviceFailure("this Vulkan executable was closed; load the plan again")
        self._check(feeds)
        for name in self.program["inputs"]:
            off, n = self.io_offsets[name], self.tensors[name]["nbytes"]
            self.io_view[off : off + n] = np.ascontiguousarray(feeds[name]).reshape(-1).view(np.uint8)
        self.ctx.submit(self.cmd, self.fence)
        outputs = {}
        for name in self.program["outputs"]:
            t = self.tensors[name]
            off = self.io_offsets[name]
            raw = self.io_view[off : off + t["nbytes"]].copy()
            outputs[name] = raw.view(np.dtype(t["dtype"])).reshape(t["shape"])
        if self.query_pool is not None:
            self._timings = self._read_timestamps()
        return outputs

    def _read_timestamps(self) -> list[StepTiming]:
        vk = self.ctx.vk
        n = 2 * len(self.dispatches)
        data = vk.ffi.new("uint64_t[]", n)
        flags = vk.VK_QUERY_RESULT_64_BIT | vk.VK_QUERY_RESULT_WAIT_BIT
        vk.vkGetQueryPoolResults(self.ctx.device, self.query_pool, 0, n, 8 * n, data, 8, flags)
        mask = (1 << self.ctx.timestamp_bits) - 1 if self.ctx.timestamp_bits < 64 else (1 << 64) - 1
        period = self.ctx.props.limits.timestampPeriod
        ticks = [int(data[i]) & mask for i in range(n)]
        base = ticks[0]
        return [
            StepTiming(
                label=d["label"],
                start_ns=int((ticks[2 * i] - base) * period),
                duration_ns=int(((ticks[2 * i + 1] - ticks[2 * i]) & mask) * period),
            )
            for i, d in enumerate(self.dispatches)
        ]

    def timings(self) -> list[StepTiming]:
        return list(self._timings)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        vk, dev = self.ctx.vk, self.ctx.device
        vk.vkDeviceWaitIdle(dev)
        if self.fence is not None:
            vk.vkDestroyFence(dev, self.fence, None)
        if self.cmd is not None:
            vk.vkFreeCommandBuffers(dev, self.ctx.pool, 1, [self.cmd])
        if self.query_pool is not None:
            vk.vkDestroyQueryPool(dev, self.query_pool, None)
        if self.desc_pool is not None:
            vk.vkDestroyDescriptorPool(dev, self.desc_pool, None)
        for module, set_layout, layout, pipeline in self.pipelines.values():
            vk.vkDestroyPipeline(dev, pipeline, None)
            vk.vkDestroyPipelineLayout(dev, layout, None)
            vk.vkDestroyDescriptorSetLayout(dev, set_layout, None)
            vk.vkDestroyShaderModule(dev, module, None)
        if self.io is not None:
            vk.vkUnmapMemory(dev, self.io[1])
        for buf, mem in [*self.regions.values(), *([self.io] if self.io is not None else [])]:
            self.ctx.free(buf, mem)
