"""What a Vulkan partition builds once at load (vulkan.py's VulkanExecutable): its compute pipelines, each checked
against what its dispatches bind and what the device has, and its weights, copied into place; and the reading of
its GPU timestamps after a run."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from runtime_min import format as fmt
from runtime_min.backends.base import StepTiming
from runtime_min.backends.gpu_program import GpuProgram, spirv_scan
from runtime_min.backends.vulkan_device import Allocator, Buffer, Device, Kernel
from runtime_min.errors import BackendUnavailable
from runtime_min.manifest import Bundle


def build_kernels(dev: Device, program: GpuProgram, bundle: Bundle, where: str, kernels: dict[str, Kernel]) -> None:
    """One pipeline per distinct kernel file into `kernels` (every one built, so the caller can close them when
    another fails), each checked to read no binding its dispatches do not bind and to need nothing the device lacks
    (BackendUnavailable, so the plan falls back to the CPU with one warning); compiled on several threads (the
    driver's compiler is most of a cold load)."""
    todo: dict[str, tuple[bytes, int, int | None]] = {}
    for d in program.dispatches:
        name, count = d["kernel"], len(d["bindings"])
        if name not in todo:
            code = bundle.path(name, where).read_bytes()
            bindings, capabilities = spirv_scan(code, where)
            if max(bindings, default=-1) >= count:
                raise fmt.bad(where, f"kernel {name} reads more buffers than its dispatch binds")
            missing = program.missing(name, capabilities, dev.features, where)
            if missing:
                raise BackendUnavailable(
                    f"{dev.props.deviceName} lacks {', '.join(missing)}, which kernel {name} of "
                    f"{where} needs; compile for this device (ragc profile, then ragc compile)"
                )
            todo[name] = (code, count, d["subgroup_size"])
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        made = {name: pool.submit(Kernel, dev, code, n, name, sub) for name, (code, n, sub) in todo.items()}
    failed = [f.exception() for f in made.values() if f.exception() is not None]
    kernels.update({name: f.result() for name, f in made.items() if f.exception() is None})
    if failed:
        raise failed[0]
    limits = dev.props.limits.maxComputeWorkGroupCount
    for d in program.dispatches:
        name, count = d["kernel"], len(d["bindings"])
        if count != kernels[name].bindings or any(g > limits[i] for i, g in enumerate(d["groups"])):
            raise fmt.bad(where, f"dispatch {d['label']!r} binds or launches more than its kernel or the device takes")


def upload_weights(
    dev: Device, alloc: Allocator, program: GpuProgram, bundle: Bundle, weights: Buffer, where: str
) -> None:
    """Every weight copied once from the mapped tensor store into staging, then by the GPU into `weights`."""
    if not program.weights_bytes:
        return
    vk = dev.vk
    staging = alloc.buffer(program.weights_bytes, vk.VK_BUFFER_USAGE_TRANSFER_SRC_BIT, "host")
    cmd, fence = dev.command_buffer(), vk.vkCreateFence(dev.device, vk.VkFenceCreateInfo(), None)
    try:
        for name, store_offset in program.weight_sources():
            t = program.tensors[name]
            staging.mapped[t["offset"] : t["offset"] + t["nbytes"]] = bundle.store.view(
                store_offset, t["nbytes"], where
            )
        vk.vkBeginCommandBuffer(cmd, vk.VkCommandBufferBeginInfo())
        vk.vkCmdCopyBuffer(cmd, staging.handle, weights.handle, 1, [vk.VkBufferCopy(size=program.weights_bytes)])
        vk.vkEndCommandBuffer(cmd)
        dev.submit([cmd], fence)
    finally:
        vk.vkDestroyFence(dev.device, fence, None)
        vk.vkFreeCommandBuffers(dev.device, dev.pool, 1, [cmd])
        alloc.free(staging)


def read_timestamps(dev: Device, query_pool: Any, dispatches: list[dict[str, Any]]) -> list[StepTiming]:
    """Each dispatch's start (from the first) and duration in ns, from the last run's timestamp queries."""
    vk, n = dev.vk, 2 * len(dispatches)
    data = vk.ffi.new("uint64_t[]", n)
    flags = vk.VK_QUERY_RESULT_64_BIT | vk.VK_QUERY_RESULT_WAIT_BIT
    vk.vkGetQueryPoolResults(dev.device, query_pool, 0, n, 8 * n, data, 8, flags)
    mask, period = (1 << min(dev.timestamp_bits, 64)) - 1, dev.props.limits.timestampPeriod
    ticks = [int(data[i]) & mask for i in range(n)]
    return [
        StepTiming(
            d["label"],
            int((ticks[2 * i] - ticks[0]) * period),
            int(((ticks[2 * i + 1] - ticks[2 * i]) & mask) * period),
        )
        for i, d in enumerate(dispatches)
    ]
