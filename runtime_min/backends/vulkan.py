"""The GPU backend: "spirv-v2" partitions through Vulkan (the `vulkan` cffi package, imported lazily).

Layers, bottom up: Device, Allocator, Buffer and Kernel (vulkan_device.py), what a partition builds once at load
(vulkan_load.py: its pipelines, its weights), then VulkanExecutable here (one partition: weights uploaded once from
the tensor store, activations in one device-local arena, everything pre-recorded per staging set, so a run is one
submit and one fence wait; kept inputs stay in the arena between runs).

Memory bridge (load option zero_copy): page-aligned inputs are imported (VK_EXT_external_memory_host); where
device-local memory is host-visible (unified memory, resizable BAR) inputs go straight into the arena; outputs are
views of a staging set leased to the run, reused only once no array derived from them is alive.

Untrusted bundles: robustBufferAccess is on (out-of-range accesses read zeros, write nothing), every range,
binding and workgroup count is checked, and a submission that does not finish in its FENCE_TIMEOUT_S is a
DeviceFailure. cffi trap (shared/DEVICE.md): see vulkan_device.py.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from runtime_min.backends.base import Backend, CopyStats, Executable, StepTiming
from runtime_min.backends.gpu_program import GpuProgram
from runtime_min.backends.vulkan_device import (
    HOST_IMPORT,
    TYPE_NAMES,
    Allocator,
    Buffer,
    Device,
    HostImports,
    Kernel,
    import_vulkan,
)
from runtime_min.backends.vulkan_load import build_kernels, read_timestamps, upload_weights
from runtime_min.errors import DeviceFailure
from runtime_min.manifest import Bundle, Partition
from runtime_min.options import LoadOptions

MAX_LEASED = 8  # staging sets whose outputs may be out as views at once; beyond, outputs are copied


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
        self.kept_inputs: dict[str, str] = {}  # input kept in the arena between runs -> the output it becomes
        self.desc_pool = self.query_pool = self.fence = self.upload_cmd = self.imports = self.arena_view = None
        try:
            data = bundle.read_json(partition.artifact.main, self.where)
            self.program = program = GpuProgram(data, partition, self.where)
            self.moving = (program.inputs, program.outputs)  # what crosses between host and arena every run
            usage = vk.VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | vk.VK_BUFFER_USAGE_TRANSFER_SRC_BIT
            usage |= vk.VK_BUFFER_USAGE_TRANSFER_DST_BIT
            self.weights = self._buffer(program.weights_bytes, usage, "device")
            self.arena = self._arena(program.arena_bytes, usage)
            upload_weights(self.dev, self.alloc, program, bundle, self.weights, self.where)
            if self.zero_copy and self.arena_view is None and HOST_IMPORT in self.dev.extensions and program.inputs:
                self.imports = HostImports(self.alloc)  # (a mapped arena is written directly: nothing to import)
            build_kernels(self.dev, program, bundle, self.where, self.kernels)
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
            self._copies(io.cmd, staging.handle, self.moving[0], to_device=True)
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
        self._copies(io.cmd, staging.handle, self.moving[1], to_device=False)
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
        self.program.check_feeds(feeds, self.kept_inputs)
        for name in self.kept_inputs.keys() & feeds.keys():
            self._transfer(name, feeds[name])
        io, leased = self._take_set()
        self.dev.submit([*self._send_inputs(feeds, io), io.cmd], self.fence)
        self.stats.runs += 1
        raw = io.buffer.mapped
        if leased:
            lease = Lease(raw)
            raw, io.lease = np.asarray(lease), weakref.ref(lease)
        outputs = {}
        for name in self.moving[1]:
            t, off = self.program.tensors[name], self.program.io_offsets[name]
            view = raw[off : off + t["nbytes"]].view(t["dtype"]).reshape(t["shape"])
            outputs[name] = view if leased else view.copy()
            self.stats.count(1 if leased else 2, t["nbytes"], avoided=1 if leased else 0)
        if self.query_pool is not None:
            self._timings = read_timestamps(self.dev, self.query_pool, self.program.dispatches)
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
        for name in self.moving[0]:
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
        self._copies(self.upload_cmd, io.buffer.handle, self.moving[0], to_device=True, sources=imported)
        self._barrier(
            self.upload_cmd,
            (vk.VK_PIPELINE_STAGE_TRANSFER_BIT, vk.VK_ACCESS_TRANSFER_WRITE_BIT),
            (vk.VK_PIPELINE_STAGE_TRANSFER_BIT, vk.VK_ACCESS_TRANSFER_WRITE_BIT),
        )
        vk.vkEndCommandBuffer(self.upload_cmd)
        return [self.upload_cmd]

    def keep(self, name: str, output: str) -> bool:
        t, o = self.program.tensors[name], self.program.tensors[output]
        if (t["region"], t["offset"]) != (o["region"], o["offset"]) or name not in self.moving[0]:
            return False  # only where codegen made the output share the input's arena range (an in-place update)
        self.kept_inputs[name] = output
        self.moving = tuple([n for n in names if n not in (name, output)] for names in self.moving)
        self._transfer(name, np.zeros(t["shape"], t["dtype"]))
        self._drop_sets()
        self.io_sets.append(self._new_set())  # recorded again without the kept tensors' copies
        return True

    def kept(self, name: str) -> np.ndarray:
        return self._transfer(name)

    def _transfer(self, name: str, value: np.ndarray | None = None) -> np.ndarray:
        """Write `value` into tensor `name`'s arena range, or read a copy of that range (`value` None): one blocking
        copy through its slot in the private staging set, or directly where the arena is mapped."""
        t, vk, staging = self.program.tensors[name], self.dev.vk, self.io_sets[0].buffer
        if self.arena_view is not None:
            window = self.arena_view[t["offset"] : t["offset"] + t["nbytes"]]
        else:
            window = staging.mapped[self.program.io_offsets[name] :][: t["nbytes"]]
        if value is not None:
            window[:] = value.reshape(-1).view(np.uint8)
        if self.arena_view is None:
            cmd = self.dev.command_buffer()
            try:
                vk.vkBeginCommandBuffer(cmd, vk.VkCommandBufferBeginInfo())
                self._copies(cmd, staging.handle, [name], to_device=value is not None)
                transfer, host = vk.VK_PIPELINE_STAGE_TRANSFER_BIT, vk.VK_PIPELINE_STAGE_HOST_BIT
                self._barrier(cmd, (transfer, vk.VK_ACCESS_TRANSFER_WRITE_BIT), (host, vk.VK_ACCESS_HOST_READ_BIT))
                vk.vkEndCommandBuffer(cmd)
                self.dev.submit([cmd], self.fence)
            finally:
                vk.vkFreeCommandBuffers(self.dev.device, self.dev.pool, 1, [cmd])
        self.stats.count(1 if self.arena_view is not None else 2, t["nbytes"])
        return value if value is not None else window.view(t["dtype"]).reshape(t["shape"]).copy()

    def copy_stats(self) -> CopyStats:
        return CopyStats(**vars(self.stats))

    def timings(self) -> list[StepTiming]:
        return list(self._timings)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        vk, device = self.dev.vk, self.dev.device
        vk.vkDeviceWaitIdle(device)
        self._drop_sets()
        if self.upload_cmd is not None:
            vk.vkFreeCommandBuffers(device, self.dev.pool, 1, [self.upload_cmd])
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
        self.buffers, self.kernels = [], {}

    def _drop_sets(self) -> None:
        """Free every staging set and its commands; a set whose outputs the caller still holds once they are dropped."""
        for io in self.io_sets:
            self.dev.vk.vkFreeCommandBuffers(self.dev.device, self.dev.pool, 1, [io.cmd])
            lease = io.lease() if io.lease is not None else None
            if lease is None:
                self.alloc.free(io.buffer)
            else:  # the caller still holds outputs of this set: free it (and the device) when they are dropped
                self.alloc.free_when_dead(lease, io.buffer)
            del lease
        self.io_sets = []


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
