"""The GPU backend: runs "spirv-v1" partitions through Vulkan (the `vulkan` cffi package, imported lazily).

Per partition, `prepare` uploads the weights once into device-local memory, builds every pipeline once, lays
the activations into one device-local arena and pre-records the command buffers: copy inputs in (per staging set),
the dispatches with a barrier after each, copy outputs out (per staging set). `run` fills host-visible staging,
submits once and waits on a fence.

Memory bridge (on unless RAGC_ZERO_COPY=0 or zero_copy=False, see vulkan_bridge.py for the lifetime rule): inputs
in page-aligned host memory are imported (VK_EXT_external_memory_host) and copied by the GPU straight from there;
otherwise, where device-local memory is host-visible (unified memory, resizable BAR), inputs are written straight
into the arena the kernels read. Outputs come back as views of a staging set leased to the run instead of copies.

cffi trap (shared/DEVICE.md): the `vulkan` package does not keep nested structs, strings or arrays alive, so
every one of them is held in a local variable until the call that reads it has returned.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from runtime_min.backends.base import Backend, CopyStats, Executable, StepTiming
from runtime_min.backends.vulkan_bridge import EXTENSION, HostImports, IoSet, leased_views
from runtime_min.backends.vulkan_device import ALIGN, DEVICE_ENV, Context, align, import_vulkan
from runtime_min.errors import BackendUnavailable, BundleError, DeviceFailure, InputError
from runtime_min.shared_memory import zero_copy_enabled

FORMAT = "spirv-v1"
TYPE_NAMES = {0: "other", 1: "integrated", 2: "discrete", 3: "virtual", 4: "cpu"}
MAX_LEASED = 8  # staging sets per executable whose outputs may be out as views at once; beyond, outputs are copied


class VulkanBackend(Backend):
    """The GPU processor through Vulkan; `options`: "timestamps" (bool), "vulkan_device" (index or name),
    "zero_copy" (bool; default RAGC_ZERO_COPY, else on)."""

    device = "gpu"

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = dict(options or {})
        self._ctx = Context(import_vulkan(), self.options.get("vulkan_device") or os.environ.get(DEVICE_ENV))
        vk, ctx = self._ctx.vk, self._ctx
        both = vk.VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT | vk.VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT
        heaps = ctx.memory.memoryHeaps
        # the device-local heap is host-visible and not across a bus: a discrete card's resizable BAR does not count
        self.unified_memory = ctx.props.deviceType != vk.VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU and any(
            ctx.memory.memoryTypes[i].propertyFlags & both == both
            and heaps[ctx.memory.memoryTypes[i].heapIndex].size > 2**30
            for i in range(ctx.memory.memoryTypeCount)
        )
        self.has_external_memory_host = EXTENSION in ctx.extensions
        self.zero_copy = zero_copy_enabled(self.options)
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
        exe = _VulkanExecutable(
            self._ctx, program, Path(bundle_dir), bool(self.options.get("timestamps")), self.zero_copy
        )
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
    def __init__(
        self, ctx: Context, program: dict[str, Any], bundle_dir: Path, timestamps: bool, zero_copy: bool
    ) -> None:
        self.ctx = ctx
        self.program = program
        self.tensors = program["tensors"]
        self.dispatches = program["dispatches"]
        self.zero_copy = zero_copy
        self.stats = CopyStats()
        self._timings: list[StepTiming] = []
        self._closed = False
        self.regions: dict[str, tuple[Any, Any]] = {}
        self.pipelines: dict[str, tuple[Any, Any, Any, Any]] = {}
        self.io_sets: list[IoSet] = []  # io_sets[0] is private (its outputs are copied); the others are leased
        self.desc_pool = self.query_pool = self.fence = self.cmd = self.upload_cmd = None
        self.arena_view: np.ndarray | None = None  # the mapped arena, where device-local memory is host-visible
        self.imports: HostImports | None = None
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
        self._build_arena(regions["arena"]["nbytes"], storage | xfer)
        if weights:
            ctx.upload(self.regions["weights"][0], weights)
        self.io_offsets: dict[str, int] = {}
        self.io_size = 0
        for name in program["inputs"] + program["outputs"]:
            self.io_offsets[name] = self.io_size
            self.io_size += align(self.tensors[name]["nbytes"])
        if self.zero_copy and EXTENSION in ctx.extensions and program["inputs"]:
            self.imports = HostImports(ctx)
        self._build_pipelines(bundle_dir)
        self._build_descriptors()
        if timestamps and ctx.timestamp_bits and self.dispatches:
            info = vk.VkQueryPoolCreateInfo(queryType=vk.VK_QUERY_TYPE_TIMESTAMP, queryCount=2 * len(self.dispatches))
            self.query_pool = vk.vkCreateQueryPool(ctx.device, info, None)
        self.fence = vk.vkCreateFence(ctx.device, vk.VkFenceCreateInfo(), None)
        self.cmd = ctx.command_buffer()
        self._record()
        self.io_sets.append(self._new_set())

    def _build_arena(self, nbytes: int, usage: int) -> None:
        """The arena in device-local memory; host-visible and mapped when the bridge is on and the device has such
        memory (then inputs are written straight into it)."""
        ctx = self.ctx
        if self.zero_copy:
            try:
                self.regions["arena"] = ctx.buffer(nbytes, usage, host=False, shared=True)
            except DeviceFailure:  # no device-local host-visible memory type, or its heap (a BAR window) is full
                pass
            else:
                mapped = ctx.vk.vkMapMemory(ctx.device, self.regions["arena"][1], 0, max(nbytes, ALIGN), 0)
                self.arena_view = np.frombuffer(mapped, np.uint8)
                return
        self.regions["arena"] = ctx.buffer(nbytes, usage, host=False)

    def _new_set(self) -> IoSet:
        """A staging buffer with its pre-recorded copy-in (only when inputs go through staging) and copy-out."""
        ctx, vk = self.ctx, self.ctx.vk
        xfer = vk.VK_BUFFER_USAGE_TRANSFER_SRC_BIT | vk.VK_BUFFER_USAGE_TRANSFER_DST_BIT
        buf, mem = ctx.buffer(self.io_size, xfer, host=True)
        raw = np.frombuffer(vk.vkMapMemory(ctx.device, mem, 0, max(self.io_size, ALIGN), 0), np.uint8)
        io = IoSet(buf, mem, raw, None, ctx.command_buffer())
        vk.vkBeginCommandBuffer(io.copy_out, vk.VkCommandBufferBeginInfo())
        self._copies(io.copy_out, buf, self.program["outputs"], to_device=False)
        self._barrier(
            io.copy_out,
            (vk.VK_PIPELINE_STAGE_TRANSFER_BIT, vk.VK_ACCESS_TRANSFER_WRITE_BIT),
            (vk.VK_PIPELINE_STAGE_HOST_BIT, vk.VK_ACCESS_HOST_READ_BIT),
        )
        vk.vkEndCommandBuffer(io.copy_out)
        if self.arena_view is None and self.program["inputs"]:
            io.copy_in = ctx.command_buffer()
            vk.vkBeginCommandBuffer(io.copy_in, vk.VkCommandBufferBeginInfo())
            self._copies(io.copy_in, buf, self.program["inputs"], to_device=True)
            vk.vkEndCommandBuffer(io.copy_in)
        return io

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
        self.descriptor_sets = []
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
            self.descriptor_sets.append(dset)

    def _barrier(self, cmd: Any, src: tuple[int, int], dst: tuple[int, int]) -> None:
        """A global memory barrier from (stage, access) `src` to (stage, access) `dst`."""
        vk = self.ctx.vk
        barrier = vk.VkMemoryBarrier(srcAccessMask=src[1], dstAccessMask=dst[1])
        vk.vkCmdPipelineBarrier(cmd, src[0], dst[0], 0, 1, [barrier], 0, None, 0, None)

    def _copies(self, cmd: Any, io: Any, names: list[str], to_device: bool, sources: dict | None = None) -> None:
        """Copy commands between staging buffer `io` and the arena; `sources` maps an input to an imported buffer
        (offset 0) that replaces staging as its source."""
        vk = self.ctx.vk
        for name in names:
            t = self.tensors[name]
            device_buf = self.regions[t["region"]][0]
            host_buf, io_off = (sources[name], 0) if sources and name in sources else (io, self.io_offsets[name])
            dev_off = t["offset"]
            region = vk.VkBufferCopy(
                srcOffset=io_off if to_device else dev_off, dstOffset=dev_off if to_device else io_off, size=t["nbytes"]
            )
            src, dst = (host_buf, device_buf) if to_device else (device_buf, host_buf)
            vk.vkCmdCopyBuffer(cmd, src, dst, 1, [region])

    def _record(self) -> None:
        """The dispatches of this partition, separated by barriers; copies in and out are recorded per staging set
        and submitted in the same batch, before and after it."""
        vk, cmd = self.ctx.vk, self.cmd
        compute, transfer = vk.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, vk.VK_PIPELINE_STAGE_TRANSFER_BIT
        read, write = vk.VK_ACCESS_SHADER_READ_BIT, vk.VK_ACCESS_SHADER_WRITE_BIT
        vk.vkBeginCommandBuffer(cmd, vk.VkCommandBufferBeginInfo())
        if self.query_pool is not None:
            vk.vkCmdResetQueryPool(cmd, self.query_pool, 0, 2 * len(self.dispatches))
        after = (compute | transfer, read | write | vk.VK_ACCESS_TRANSFER_READ_BIT)
        self._barrier(cmd, (transfer, vk.VK_ACCESS_TRANSFER_WRITE_BIT), after)
        for i, (d, dset) in enumerate(zip(self.dispatches, self.descriptor_sets, strict=True)):
            _, _, layout, pipeline = self.pipelines[d["kernel"]]
            vk.vkCmdBindPipeline(cmd, vk.VK_PIPELINE_BIND_POINT_COMPUTE, pipeline)
            sets = vk.ffi.new("VkDescriptorSet[]", [dset])
            vk.vkCmdBindDescriptorSets(cmd, vk.VK_PIPELINE_BIND_POINT_COMPUTE, layout, 0, 1, sets, 0, None)
            if self.query_pool is not None:
                vk.vkCmdWriteTimestamp(cmd, compute, self.query_pool, 2 * i)
            vk.vkCmdDispatch(cmd, *d["groups"])
            if self.query_pool is not None:
                vk.vkCmdWriteTimestamp(cmd, compute, self.query_pool, 2 * i + 1)
            self._barrier(cmd, (compute, write), after)
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
        io, leased = self._take_set()
        cmds = [*self._send_inputs(feeds, io), self.cmd, io.copy_out]
        self.ctx.submit(cmds, self.fence)
        self.stats.runs += 1
        layout = [(name, self.io_offsets[name], self.tensors[name]) for name in self.program["outputs"]]
        for _, _, t in layout:
            self.stats.count(1 if leased else 2, t["nbytes"], avoided=1 if leased else 0)
        if leased:
            outputs, io.lease = leased_views(io.raw, layout)
        else:
            outputs = {
                name: io.raw[off : off + t["nbytes"]].copy().view(np.dtype(t["dtype"])).reshape(t["shape"])
                for name, off, t in layout
            }
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
        for name in self.program["inputs"]:
            t, x = self.tensors[name], np.ascontiguousarray(feeds[name])
            if self.imports is not None and (buf := self.imports.buffer(x)) is not None:
                imported[name] = buf
                self.stats.count(1, t["nbytes"], avoided=1)
                continue
            if self.arena_view is not None:
                target, skipped = self.arena_view[t["offset"] : t["offset"] + t["nbytes"]], 1
            else:
                off = self.io_offsets[name]
                target, skipped, staged = io.raw[off : off + t["nbytes"]], 0, True
            target[:] = x.reshape(-1).view(np.uint8)
            self.stats.count(2 - skipped, t["nbytes"], avoided=skipped)
        if not imported:
            return [io.copy_in] if staged else []
        return [self._record_upload(io, imported, staged)]

    def _record_upload(self, io: IoSet, imported: dict[str, Any], staged: bool) -> Any:
        """This run's input copies: imported inputs from their own buffers, staged ones from the set."""
        vk = self.ctx.vk
        if self.upload_cmd is None:
            self.upload_cmd = self.ctx.command_buffer()
        vk.vkResetCommandBuffer(self.upload_cmd, 0)
        once = vk.VkCommandBufferBeginInfo(flags=vk.VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT)
        vk.vkBeginCommandBuffer(self.upload_cmd, once)
        names = [n for n in self.program["inputs"] if n in imported or staged]
        self._copies(self.upload_cmd, io.buffer, names, to_device=True, sources=imported)
        vk.vkEndCommandBuffer(self.upload_cmd)
        return self.upload_cmd

    def copy_stats(self) -> CopyStats:
        return CopyStats(**vars(self.stats))

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
        cmds = [self.cmd, self.upload_cmd, *(c for io in self.io_sets for c in (io.copy_in, io.copy_out))]
        for cmd in cmds:
            if cmd is not None:
                vk.vkFreeCommandBuffers(dev, self.ctx.pool, 1, [cmd])
        if self.query_pool is not None:
            vk.vkDestroyQueryPool(dev, self.query_pool, None)
        if self.desc_pool is not None:
            vk.vkDestroyDescriptorPool(dev, self.desc_pool, None)
        for module, set_layout, layout, pipeline in self.pipelines.values():
            vk.vkDestroyPipeline(dev, pipeline, None)
            vk.vkDestroyPipelineLayout(dev, layout, None)
            vk.vkDestroyDescriptorSetLayout(dev, set_layout, None)
            vk.vkDestroyShaderModule(dev, module, None)
        if self.imports is not None:
            self.imports.close()
        for buf, mem in self.regions.values():
            self.ctx.free(buf, mem)  # freeing mapped memory unmaps it
        for io in self.io_sets:
            lease = io.lease() if io.lease is not None else None
            if lease is None:
                self.ctx.free(io.buffer, io.memory)
            else:  # the caller still holds outputs of this set: free it (and the device) when they are dropped
                self.ctx.free_when_dead(lease, io.buffer, io.memory)
            del lease
        self.io_sets = []
