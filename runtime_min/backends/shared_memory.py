"""Host memory a processor can use in place (zero-copy): page-aligned numpy arrays and the bridge's on/off switch.

A GPU with VK_EXT_external_memory_host (or an NPU through XRT user-pointer buffers) can import host memory whose
address and size are multiples of its import alignment (one page here); `empty_shared` allocates such arrays, so
inputs and CPU-side tensors that feed a GPU partition can be read by it without a staging copy.
"""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np

SHARED_ALIGN = max(4096, mmap.PAGESIZE)  # the import alignment of every Vulkan driver we know of is one page


def round_up(nbytes: int, align: int = SHARED_ALIGN) -> int:
    return -(-nbytes // align) * align


def empty_shared(shape: tuple[int, ...] | int, dtype: Any = np.float32, align: int = SHARED_ALIGN) -> np.ndarray:
    """An uninitialised C-contiguous array whose address is `align`-aligned and whose allocation covers whole
    `align` blocks, so a GPU or NPU can import its memory instead of copying it."""
    if align <= 0 or align & (align - 1):
        raise ValueError(f"alignment must be a power of two, not {align}; use the default (one page)")
    dt = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    raw = np.empty(round_up(max(nbytes, 1), align) + align, np.uint8)
    start = (-raw.ctypes.data) % align
    return raw[start : start + nbytes].view(dt).reshape(shape)


def is_shareable(array: np.ndarray, align: int = SHARED_ALIGN) -> bool:
    """Whether `array` starts on an `align` boundary and is one contiguous block (what a host import needs)."""
    return array.flags.c_contiguous and array.nbytes > 0 and array.ctypes.data % align == 0
