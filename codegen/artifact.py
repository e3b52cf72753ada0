"""What an emitter hands the bundle writer for one partition."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Artifact:
    format: str  # "onnx", "spirv-v1", "xclbin-ref-v1", ...
    files: dict[str, bytes]  # relative file name -> contents, written into the bundle and hashed in the manifest
    meta: dict[str, Any] = field(default_factory=dict)  # format-specific JSON stored beside the file list
