"""The Vulkan pipeline cache kept in the user cache ($XDG_CACHE_HOME/ragc/vulkan, one file per device, driver and
pipelineCacheUUID): seeded when the device opens (a stale or foreign file is ignored) and written back atomically
whenever it grew, at load as well as at close, so an app that never closes its plan still starts fast next time."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any


def cache_path(props: Any) -> Path:
    uuid = bytes(props.pipelineCacheUUID).hex()
    name = f"{props.vendorID:04x}-{props.deviceID:04x}-{props.driverVersion:x}-{uuid}.bin"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ragc" / "vulkan" / name


class PipelineCache:
    """A VkPipelineCache (`handle`) backed by its file."""

    def __init__(self, vk: Any, device: Any, path: Path) -> None:
        self.vk, self.device, self.path = vk, device, path
        self.saved_bytes = 0  # the size on disk: the same size after a load means nothing new to write
        try:
            data = path.read_bytes()
            info = vk.VkPipelineCacheCreateInfo(initialDataSize=len(data), pInitialData=vk.ffi.new("char[]", data))
            self.handle = vk.vkCreatePipelineCache(device, info, None)
            self.saved_bytes = len(data)
        except (OSError, vk.VkError):
            self.handle = vk.vkCreatePipelineCache(device, vk.VkPipelineCacheCreateInfo(), None)

    def save(self) -> None:
        """Write the cache atomically when it grew; an unwritable cache folder is not an error."""
        vk, ffi = self.vk, self.vk.ffi
        size = ffi.new("size_t*")
        if vk.lib.vkGetPipelineCacheData(self.device, self.handle, size, ffi.NULL) != vk.VK_SUCCESS:
            return
        if size[0] == self.saved_bytes:
            return
        data = ffi.new("char[]", size[0])
        if vk.lib.vkGetPipelineCacheData(self.device, self.handle, size, data) != vk.VK_SUCCESS:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(ffi.buffer(data, size[0]))
            os.replace(tmp, self.path)
            self.saved_bytes = size[0]
        except OSError:
            pass

    def close(self) -> None:
        self.save()
        self.vk.vkDestroyPipelineCache(self.device, self.handle, None)
