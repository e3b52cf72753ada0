"""One Vulkan device opened for the GPU backend: instance, device, queue, command pool, buffers, submission.

cffi trap (shared/DEVICE.md): the `vulkan` package does not keep nested structs, strings or arrays alive, so
every one of them is held in a local variable until the call that reads it has returned.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from runtime_min.backends.vulkan_bridge import EXTENSION
from runtime_min.errors import BackendUnavailable, DeviceFailure

DEVICE_ENV = "RAGC_VULKAN_DEVICE"
ALIGN = 256
FENCE_TIMEOUT_NS = 600 * 10**9
# physical device type -> preference (lower first): discrete, integrated, virtual, CPU, other
TYPE_RANK = {2: 0, 1: 1, 3: 2, 4: 3, 0: 4}


def import_vulkan() -> Any:
    try:
        import vulkan
    except ImportError as exc:
        raise BackendUnavailable(f"vulkan package not installed ({exc}); pip install vulkan") from exc
    except OSError as exc:
        raise BackendUnavailable(f"Vulkan loader missing ({exc}); install libvulkan1 and a driver") from exc
    return vulkan


def align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def pick_device(vk: Any, devices: list, wanted: str | None) -> Any:
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


class Context:
    """Instance, device, queue and command pool of one physical device, plus buffer helpers."""

    def __init__(self, vk: Any, wanted: str | None) -> None:
        self.vk = vk
        self._lock = threading.Lock()
        self._pending = 0  # buffers kept alive after close for views still held by the caller
        self._closing = False
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
        names = [e for e in ("VK_KHR_8bit_storage", EXTENSION) if e in self.extensions]
        if "VK_KHR_8bit_storage" in names or vk.VK_VERSION_MINOR(self.props.apiVersion) >= 2:
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

    def buffer(self, size: int, usage: int, host: bool, shared: bool = False) -> tuple[Any, Any]:
        """A buffer bound to fresh memory: host-visible coherent (cached if possible), device-local, or (`shared`)
        device-local AND host-visible coherent, which raises DeviceFailure where no memory type is both."""
        vk = self.vk
        info = vk.VkBufferCreateInfo(size=max(size, ALIGN), usage=usage, sharingMode=vk.VK_SHARING_MODE_EXCLUSIVE)
        buf = vk.vkCreateBuffer(self.device, info, None)
        req = vk.vkGetBufferMemoryRequirements(self.device, buf)
        coherent = vk.VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | vk.VK_MEMORY_PROPERTY_HOST_COHERENT_BIT
        try:
            if host:
                index = self.memory_type(req.memoryTypeBits, coherent, vk.VK_MEMORY_PROPERTY_HOST_CACHED_BIT)
            else:
                local = vk.VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT | (coherent if shared else 0)
                index = self.memory_type(req.memoryTypeBits, local)
        except DeviceFailure:
            vk.vkDestroyBuffer(self.device, buf, None)
            raise
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

    def free_when_dead(self, owner: Any, buf: Any, mem: Any) -> None:
        """Free a buffer once `owner` (the lease of views into its memory) dies; the device outlives it."""
        with self._lock:
            self._pending += 1
        weakref.finalize(owner, self._late_free, buf, mem)

    def _late_free(self, buf: Any, mem: Any) -> None:
        self.free(buf, mem)
        with self._lock:
            self._pending -= 1
            last = self._closing and self._pending == 0
        if last:
            self._destroy()

    def command_buffer(self) -> Any:
        info = self.vk.VkCommandBufferAllocateInfo(
            commandPool=self.pool, level=self.vk.VK_COMMAND_BUFFER_LEVEL_PRIMARY, commandBufferCount=1
        )
        return self.vk.vkAllocateCommandBuffers(self.device, info)[0]

    def submit(self, cmds: list[Any], fence: Any) -> None:
        """Submit recorded command buffers in order as one batch and wait (cffi releases the GIL while waiting)."""
        vk = self.vk
        array = vk.ffi.new("VkCommandBuffer[]", cmds)
        submit = vk.VkSubmitInfo(commandBufferCount=len(cmds), pCommandBuffers=array)
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
            self.submit([cmd], fence)
        finally:
            vk.vkDestroyFence(self.device, fence, None)
            vk.vkFreeCommandBuffers(self.device, self.pool, 1, [cmd])
            self.free(staging, mem)

    def close(self) -> None:
        """Destroy the device now, or when the last buffer kept for outstanding views is freed."""
        vk = self.vk
        vk.vkDeviceWaitIdle(self.device)
        vk.vkDestroyCommandPool(self.device, self.pool, None)
        with self._lock:
            self._closing = True
            now = self._pending == 0
        if now:
            self._destroy()

    def _destroy(self) -> None:
        self.vk.vkDestroyDevice(self.device, None)
        self.vk.vkDestroyInstance(self.instance, None)
