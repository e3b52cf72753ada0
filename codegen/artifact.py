"""What an emitter hands the bundle writer for one partition, and the tensor store its constants go into."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runtime_min.format import STORE_ALIGN, align


class TensorStore:
    """The bundle's tensors.bin being built: each distinct byte string once, at a STORE_ALIGN-aligned offset, in the
    order first added (so the same compile always gives the same bytes)."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._offsets: dict[bytes, int] = {}  # sha256 -> offset
        self.nbytes = 0

    def add(self, array: np.ndarray) -> int:
        """The offset of `array`'s bytes (C order, its own dtype and byte order) in the store."""
        data = np.ascontiguousarray(array).tobytes()
        key = hashlib.sha256(data).digest()
        if key not in self._offsets:
            padding = align(self.nbytes, STORE_ALIGN) - self.nbytes
            self._chunks.append(b"\0" * padding)
            self._offsets[key] = self.nbytes + padding
            self._chunks.append(data)
            self.nbytes += padding + len(data)
        return self._offsets[key]

    def data(self) -> bytes:
        return b"".join(self._chunks)


@dataclass
class Artifact:
    format: str  # "onnx", "spirv-v2", "xclbin-ref-v2"
    files: dict[str, bytes]  # relative file name -> contents, written into the bundle and hashed in the manifest
    meta: dict[str, Any] = field(default_factory=dict)  # format-specific JSON stored beside the file list
    store: TensorStore | None = None  # where its tensors were put (the bundle's shared store, or its own)
