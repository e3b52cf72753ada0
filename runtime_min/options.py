"""Load options: the keyword arguments of runtime_min.load, checked once, with every RAGC_* variable read here and
nowhere else (an explicit option wins over its variable)."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

from runtime_min.format import PROCESSORS

ENVIRONMENT = {
    "npu": "RAGC_NPU",  # xrt | sim
    "vulkan_device": "RAGC_VULKAN_DEVICE",  # index or name substring
    "zero_copy": "RAGC_ZERO_COPY",  # 0 turns the memory bridge off
    "disable": "RAGC_DISABLE",  # comma list of processors whose partitions run from their CPU fallbacks
    "xclbin_path": "RAGC_XCLBIN_PATH",  # os.pathsep list of folders holding the user's xclbins
}


@dataclass(frozen=True)
class LoadOptions:
    """The options of `runtime_min.load`, checked (see its docstring); `make` builds them over the environment."""

    cpu_threads: int = 0  # onnxruntime intra-op threads (0: onnxruntime's default)
    npu: str = "xrt"  # "xrt" (real hardware) or "sim" (the XDNA simulator)
    vulkan_device: str | None = None  # index or name substring; None: discrete > integrated > CPU implementation
    zero_copy: bool = True  # GPU outputs as views of mapped memory, page-aligned inputs imported
    timestamps: bool = False  # GPU kernel times from timestamp queries (in traces)
    disable: tuple[str, ...] = ()  # processors whose partitions run from their CPU fallbacks
    xclbin_path: tuple[str, ...] = ()
    verify: bool = True  # check every file's sha256 at load
    cpu_spinning: bool = True  # set by the plan: onnxruntime threads spin only in one-partition plans

    @classmethod
    def make(cls, given: dict[str, Any]) -> LoadOptions:
        """The options from `given` (keyword arguments, None meaning "not given") over the environment."""
        valid = [f.name for f in fields(cls) if f.name != "cpu_spinning"]
        unknown = sorted(set(given) - set(valid))
        if unknown:
            raise TypeError(f"unknown load option {unknown[0]!r}; the options are {', '.join(valid)}")
        values = {k: v for k, v in given.items() if v is not None}
        for key, variable in ENVIRONMENT.items():
            if key not in values and os.environ.get(variable, "").strip():
                values[key] = _from_environment(key, os.environ[variable].strip())
        return cls(**_checked(values))


def _from_environment(key: str, text: str) -> Any:
    if key == "zero_copy":
        return text.lower() not in ("0", "false", "no", "off")
    if key == "disable":
        return tuple(d.strip() for d in text.split(",") if d.strip())
    if key == "xclbin_path":
        return tuple(p for p in text.split(os.pathsep) if p)
    return text


def _checked(values: dict[str, Any]) -> dict[str, Any]:
    def fail(key: str, wanted: str) -> TypeError:
        return TypeError(f"load option {key}={values[key]!r}: give {wanted}")

    for key in ("zero_copy", "timestamps", "verify"):
        if key in values and not isinstance(values[key], bool):
            raise fail(key, "True or False")
    threads = values.get("cpu_threads", 0)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise fail("cpu_threads", "a whole number >= 0")
    if values.get("npu", "xrt") not in ("xrt", "sim"):
        raise fail("npu", '"xrt" or "sim"')
    if "vulkan_device" in values:
        if isinstance(values["vulkan_device"], bool) or not isinstance(values["vulkan_device"], (int, str)):
            raise fail("vulkan_device", "a device index or a name substring")
        values["vulkan_device"] = str(values["vulkan_device"])
    for key, choices in (("disable", PROCESSORS), ("xclbin_path", None)):
        if key in values:
            items = (values[key],) if isinstance(values[key], str) else values[key]
            if not all(isinstance(v, str) for v in items) or (choices and not set(items) <= set(choices)):
                raise fail(key, f"a list of {', '.join(choices) if choices else 'folders'}")
            values[key] = tuple(items)
    return values
