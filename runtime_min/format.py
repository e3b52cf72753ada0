"""The bundle contract, written once: names, versions, alignments, dtypes, bf16, canonical JSON, and the checks
every bundle entry goes through. The compiler's bundle writer imports this module too.

A bundle is untrusted input: every value read from it passes one of the `need_*` checks below, which raise a
one-line BundleError naming the file and the field; nothing is trusted because its sha256 matches.
"""

from __future__ import annotations

import json
import math
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from runtime_min.errors import BundleError

FORMAT_NAME = "ragc-bundle"
FORMAT_VERSION = 3  # what this runtime writes and reads; docs/bundle-format.md lists every version
READABLE_VERSIONS = (2, 3)  # 3: variants
PROCESSORS = ("cpu", "gpu", "npu")  # also the order of workers and trace tracks
ARTIFACT_FORMATS = {"cpu": "onnx", "gpu": "spirv-v2", "npu": "xclbin-ref-v2"}
MANIFEST, SCHEDULE, TENSOR_STORE = "manifest.json", "schedule.json", "tensors.bin"
STORE_ALIGN = 64  # every tensor in the store starts at a multiple of this
GPU_ALIGN = 256  # every GPU buffer range starts at a multiple of this (the Vulkan maximum offset alignment)
MAX_BYTES = 1 << 40  # no size or offset in a bundle may exceed this
# "object": ONNX string tensors (CPU partitions only)
DTYPES = tuple("float32 float16 float64 int64 int32 int16 int8 uint64 uint32 uint16 uint8 bool object".split())
RECOMPILE = "the bundle is corrupt or was tampered with; recompile the model"


def dumps(obj: Any) -> bytes:
    """Canonical JSON: sorted keys, fixed indentation, trailing newline (bundles must be byte-identical)."""
    return (json.dumps(obj, sort_keys=True, indent=1, allow_nan=False) + "\n").encode()


def align(n: int, to: int) -> int:
    return -(-n // to) * to


def bad(where: str, problem: str) -> BundleError:
    return BundleError(f"{where}: {problem}; {RECOMPILE}")


def need(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """obj[key], which must exist and be of `kind` (bool is never an int here)."""
    if not isinstance(obj, dict) or key not in obj:
        raise bad(where, f"{key!r} is missing")
    value = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        raise bad(where, f"{key!r} is {type(value).__name__}, not {'/'.join(k.__name__ for k in kinds)}")
    return value


def need_int(obj: Any, key: str, where: str, low: int = 0, high: int = MAX_BYTES) -> int:
    value = need(obj, key, int, where)
    if not low <= value <= high:
        raise bad(where, f"{key!r} = {value} is outside [{low}, {high}]")
    return value


def need_str(obj: Any, key: str, where: str, choices: tuple[str, ...] | None = None) -> str:
    value = need(obj, key, str, where)
    if choices is not None and value not in choices:
        raise bad(where, f"{key!r} = {value!r} is not one of {', '.join(choices)}")
    return value


def need_list(obj: Any, key: str, where: str, kind: type | tuple[type, ...] | None = None) -> list:
    value = need(obj, key, list, where)
    if kind is not None and not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
        raise bad(where, f"{key!r} holds something that is not {kind}")
    return value


def need_number(obj: Any, key: str, where: str) -> float | None:
    """An optional non-negative finite number (null allowed)."""
    value = obj.get(key) if isinstance(obj, dict) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise bad(where, f"{key!r} = {value!r} is not a non-negative number")
    return float(value)


def need_shape(obj: Any, key: str, where: str) -> tuple[int, ...]:
    dims = need_list(obj, key, where, int)
    if len(dims) > 16 or any(d < 0 or d > 1 << 31 for d in dims) or math.prod(dims) > MAX_BYTES:
        raise bad(where, f"{key!r} = {dims} is not a shape")
    return tuple(dims)


def need_dtype(obj: Any, key: str, where: str) -> str:
    return need_str(obj, key, where, DTYPES)


def nbytes(dtype: str, shape: tuple[int, ...]) -> int:
    return math.prod(shape) * np.dtype(dtype).itemsize


def need_file(name: Any, where: str) -> str:
    """A bundle file name: relative, no '..', no backslash or NUL, a plain POSIX path."""
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name:
        raise bad(where, f"file name {name!r} is not a plain relative path")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or str(path) != name:
        raise bad(where, f"bundle file {name!r} points outside the bundle")
    return name


def confined(root: Path, name: str, where: str) -> Path:
    """The file `name` inside bundle `root`, also after following symlinks."""
    path = root / need_file(name, where)
    real_root = root.resolve()
    if real_root not in path.resolve().parents:
        raise bad(where, f"bundle file {name!r} resolves outside the bundle (a symlink?)")
    return path


def to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bit patterns (uint16), rounding to nearest, ties to even; NaN stays a quiet NaN."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    out = rounded.astype(np.uint16)
    out[np.isnan(x)] = 0x7FC0
    return out


def from_bf16_bits(bits: np.ndarray) -> np.ndarray:
    """bf16 bit patterns (uint16) -> float32, exactly."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def round_bf16(x: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest bf16 value, kept as float32."""
    return from_bf16_bits(to_bf16_bits(x)).reshape(np.shape(x))
