"""The Vulkan side of the memory bridge: leased output views and imported host pointers.

Lifetime rule: an output returned as a view of a staging set's mapped memory keeps a `Lease` alive through numpy's
`base` chain; the set is reused only once its lease is dead, i.e. once no array derived from that run's outputs is
left anywhere (executor frame tables, stream queues, user code). So a view is never overwritten by a later run.

cffi trap (shared/DEVICE.md): every nested struct and pointer lives in a local variable until the call returns.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Any

import numpy as np

from runtime_min.shared_memory import is_shareable, round_up

EXTENSION = "VK_EXT_external_memory_host"
IMPORT_CACHE = 8  # imported host arrays kept (with a reference, so their memory cannot move) per executable


class Lease:
    """Owner of the numpy views handed out from one staging set for one run (exposes its memory to numpy)."""

    def __init__(self, raw: np.ndarray) -> None:
        self.__array_interface__ = raw.__array_interface__
        self._raw = raw


def leased_views(raw: np.ndarray, layout: list[tuple[str, int, dict[str, Any]]]) -> tuple[dict[str, np.ndarray], Any]:
    """Views of `raw` (name, offset, tensor entry) whose common owner is a new Lease; returns them and a weak
    reference to the lease (dead once every view and every array derived from one is gone)."""
    lease = Lease(raw)
    whole = np.asarray(lease)
    views = {
        name: whole[off : off + t["nbytes"]].view(np.dtype(t["dtype"])).reshape(t["shape"]) for name, off, t in layout
    }
    return views, weakref.ref(lease)


class HostImports:
    """Host arrays imported as transfer-source buffers through VK_EXT_external_memory_host, cached by address.

    The cache holds a reference to each imported array, so its memory stays allocated (and at the same address)
    for as long as Vulkan may read it."""

    def __init__(self, ctx: Any) -> None:
        vk, ffi = ctx.vk, ctx.vk.ffi
        self.ctx = ctx
        host = ffi.new("VkPhysicalDeviceExternalMemoryHostPropertiesEXT*")
        host.sType = vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_MEMORY_HOST_PROPERTIES_EXT
        props = ffi.new("VkPhysicalDeviceProperties2*")
        props.sType = vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2
        props.pNext = host
        vk.vkGetPhysicalDeviceProperties2(ctx.physical, props)
        self.align = int(host.minImportedHostPointerAlignment)
        self._properties = vk.vkGetDeviceProcAddr(ctx.device, "vkGetMemoryHostPointerPropertiesEXT")
        self._cache: OrderedDict[tuple[int, int], tuple[np.ndarray, Any, Any]] = OrderedDict()

    def buffer(self, array: np.ndarray) -> Any | None:
        """A VkBuffer over `array`'s own memory, or None when it cannot be imported (alignment, driver refusal)."""
        if not is_shareable(array, self.align):
            return None
        key = (array.ctypes.data, array.nbytes)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key][1]
        imported = self._import(array)
        if imported is None:
            return None
        self._cache[key] = (array, *imported)
        while len(self._cache) > IMPORT_CACHE:
            _, (_, buf, mem) = self._cache.popitem(last=False)
            self.ctx.free(buf, mem)
        return imported[0]

    def _import(self, array: np.ndarray) -> tuple[Any, Any] | None:
        vk, ffi, dev = self.ctx.vk, self.ctx.vk.ffi, self.ctx.device
        handle = vk.VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT
        size = round_up(array.nbytes, self.align)
        pointer = ffi.cast("void*", array.ctypes.data)
        try:
            bits = self._properties(dev, handle, pointer).memoryTypeBits
        except vk.VkError:
            return None
        external = vk.VkExternalMemoryBufferCreateInfo(handleTypes=handle)
        usage, exclusive = vk.VK_BUFFER_USAGE_TRANSFER_SRC_BIT, vk.VK_SHARING_MODE_EXCLUSIVE
        info = vk.VkBufferCreateInfo(pNext=external, size=size, usage=usage, sharingMode=exclusive)
        buf = vk.vkCreateBuffer(dev, info, None)
        req = vk.vkGetBufferMemoryRequirements(dev, buf)
        types = [i for i in range(self.ctx.memory.memoryTypeCount) if bits & req.memoryTypeBits & (1 << i)]
        if not types:
            vk.vkDestroyBuffer(dev, buf, None)
            return None
        source = vk.VkImportMemoryHostPointerInfoEXT(handleType=handle, pHostPointer=pointer)
        alloc = vk.VkMemoryAllocateInfo(pNext=source, allocationSize=size, memoryTypeIndex=types[0])
        try:
            mem = vk.vkAllocateMemory(dev, alloc, None)
        except vk.VkError:
            vk.vkDestroyBuffer(dev, buf, None)
            return None
        vk.vkBindBufferMemory(dev, buf, mem, 0)
        return buf, mem

    def close(self) -> None:
        for _, buf, mem in self._cache.values():
            self.ctx.free(buf, mem)
        self._cache.clear()


class IoSet:
    """One host-visible staging buffer (every input and output at its io offset) with the command buffers that
    copy its inputs in and its outputs out; `lease` is the weak reference to the views last handed out from it."""

    def __init__(self, buffer: Any, memory: Any, raw: np.ndarray, copy_in: Any, copy_out: Any) -> None:
        self.buffer, self.memory, self.raw = buffer, memory, raw
        self.copy_in, self.copy_out = copy_in, copy_out
        self.lease: Any = None

    def free(self) -> bool:
        return self.lease is None or self.lease() is None
