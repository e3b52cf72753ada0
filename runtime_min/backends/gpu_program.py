"""A "spirv-v2" GPU program (`pN.gpu.json`) read and checked against its partition and itself: every tensor's range
inside its region, every weight inside the tensor store, every binding a known tensor, every kernel a listed file.

Layout: {"version": 2, "weights_bytes", "arena_bytes", "inputs", "outputs",
         "tensors": {name: {"dtype", "shape", "nbytes", "region": "weights"|"arena", "offset", "store_offset"?}},
         "dispatches": [{"label", "kernel", "bindings": [tensor...], "groups": [x, y, z], "barrier"?,
                         "subgroup_size"?}],
         "requires"?: [device property names every kernel relies on],
         "kernel_requires"?: {kernel file: [device feature names it needs]}}
A dispatch with "barrier": false touches nothing the dispatches since the last barrier wrote (codegen/gpu/barriers.py);
one with "subgroup_size" runs its kernel with that required subgroup size (VK_EXT_subgroup_size_control).
Requirement names are Vulkan feature or property field names (KNOWN_REQUIREMENTS) or cooperative-matrix shapes
(coopmat_name). The runtime also reads each kernel's SPIR-V capabilities and refuses a kernel whose program does
not declare what its capabilities need (`kernel_needs`).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from runtime_min import format as fmt
from runtime_min.errors import InputError
from runtime_min.manifest import Partition

VERSION = 2
MAX_DISPATCHES = 1 << 16
# SPIR-V capability -> the device feature it needs (VkPhysicalDeviceFeatures and the structs vulkan.py chains)
CAPABILITY_FEATURES = {
    9: "shaderFloat16",
    10: "shaderFloat64",
    11: "shaderInt64",
    22: "shaderInt16",
    39: "shaderInt8",
    4433: "storageBuffer16BitAccess",
    4434: "uniformAndStorageBuffer16BitAccess",
    4448: "storageBuffer8BitAccess",
    4449: "uniformAndStorageBuffer8BitAccess",
    5345: "vulkanMemoryModel",
    6019: "shaderIntegerDotProduct",
    6022: "cooperativeMatrix",
}
KNOWN_REQUIREMENTS = (
    "shaderSignedZeroInfNanPreserveFloat32",  # VkPhysicalDeviceFloatControlsProperties
    "subgroupSizeControl",
    "computeFullSubgroups",
    *CAPABILITY_FEATURES.values(),
)
COMPONENTS = {
    0: "f16",
    1: "f32",
    2: "f64",
    3: "s8",
    4: "s16",
    5: "s32",
    6: "s64",
    7: "u8",
    8: "u16",
    9: "u32",
    10: "u64",
}
COOPMAT = re.compile(r"coopmat\d{1,3}x\d{1,3}x\d{1,3}_(?:[fsu]\d{1,2}){4}(?:_sat)?")
SUBGROUP_SIZES = (4, 8, 16, 32, 64, 128)


def coopmat_name(m: int, n: int, k: int, types: tuple[int, ...], saturating: bool = False) -> str | None:
    """A cooperative-matrix shape as a requirement name: coopmat<M>x<N>x<K>_<A><B><C><Result>[_sat], the types as
    VkComponentTypeKHR short names (f16, f32, s8, s32, ...); None for types without one (bf16, fp8)."""
    if any(int(t) not in COMPONENTS for t in types):
        return None
    return f"coopmat{m}x{n}x{k}_{''.join(COMPONENTS[int(t)] for t in types)}{'_sat' if saturating else ''}"


def spirv_scan(code: bytes, where: str) -> tuple[set[int], set[int]]:
    """The storage bindings (OpDecorate Binding; every one in set 0) and the capabilities a SPIR-V module declares;
    refuses non-SPIR-V."""
    words = np.frombuffer(code, "<u4") if len(code) % 4 == 0 and len(code) >= 20 else np.zeros(0, "<u4")
    if not words.size or int(words[0]) != 0x07230203:
        raise fmt.bad(where, "a kernel file is not SPIR-V")
    bindings, capabilities, i = set(), set(), 5
    while i < words.size:
        count, opcode = int(words[i]) >> 16, int(words[i]) & 0xFFFF
        if count == 0 or i + count > words.size:
            raise fmt.bad(where, "a kernel file is truncated SPIR-V")
        if opcode == 17 and count == 2:  # OpCapability
            capabilities.add(int(words[i + 1]))
        if opcode == 71 and count >= 4 and int(words[i + 2]) in (33, 34):  # OpDecorate Binding / DescriptorSet
            if int(words[i + 2]) == 34 and int(words[i + 3]) != 0:
                raise fmt.bad(where, "a kernel uses a descriptor set other than 0")
            bindings |= {int(words[i + 3])} if int(words[i + 2]) == 33 else set()
        i += count
    return bindings, capabilities


def kernel_needs(capabilities: set[int]) -> list[str]:
    """The device features a kernel's SPIR-V capabilities need, sorted."""
    return sorted({CAPABILITY_FEATURES[c] for c in capabilities if c in CAPABILITY_FEATURES})


def _known(names: list[str], where: str) -> list[str]:
    unknown = sorted(n for n in names if n not in KNOWN_REQUIREMENTS and not COOPMAT.fullmatch(n))
    if unknown:
        raise fmt.bad(where, f"its kernels need {unknown[0]!r}, which this runtime does not know (a newer ragc?)")
    return names


class GpuProgram:
    def __init__(self, data: dict[str, Any], partition: Partition, where: str) -> None:
        fmt.need_int(data, "version", where, VERSION, VERSION)
        self.requires = _known(fmt.need_list(data, "requires", where, str) if "requires" in data else [], where)
        declared = fmt.need(data, "kernel_requires", dict, where) if "kernel_requires" in data else None
        self.kernel_requires = None if declared is None else {
            fmt.need_file(k, where): _known(fmt.need_list(declared, k, where, str), where) for k in declared
        }  # fmt: skip
        self.weights_bytes = fmt.need_int(data, "weights_bytes", where)
        self.arena_bytes = fmt.need_int(data, "arena_bytes", where)
        self.inputs = fmt.need_list(data, "inputs", where, str)
        self.outputs = fmt.need_list(data, "outputs", where, str)
        self.tensors = {
            name: self._tensor(name, t, where) for name, t in fmt.need(data, "tensors", dict, where).items()
        }
        self.dispatches = [self._dispatch(d, partition, where) for d in fmt.need_list(data, "dispatches", where)]
        if len(self.dispatches) > MAX_DISPATCHES:
            raise fmt.bad(where, f"{len(self.dispatches)} dispatches is more than a partition may hold")
        for names, specs in ((self.inputs, partition.inputs), (self.outputs, partition.outputs)):
            if [
                (n, self.tensors.get(n, {}).get("dtype"), tuple(self.tensors.get(n, {}).get("shape", ())))
                for n in names
            ] != [(s.name, s.dtype, s.shape) for s in specs]:
                raise fmt.bad(where, "its inputs and outputs are not the partition's (names, dtypes, shapes)")
        self.io_offsets: dict[str, int] = {}
        self.io_bytes = 0
        for name in self.inputs + self.outputs:
            self.io_offsets[name] = self.io_bytes
            self.io_bytes += fmt.align(self.tensors[name]["nbytes"], fmt.GPU_ALIGN)
        if len(set(self.inputs + self.outputs)) != len(self.inputs + self.outputs):
            raise fmt.bad(where, "a tensor is both an input and an output, or listed twice")
        self._expected = {n: (np.dtype(self.tensors[n]["dtype"]), tuple(self.tensors[n]["shape"])) for n in self.inputs}

    def _tensor(self, name: str, t: Any, where: str) -> dict[str, Any]:
        where = f"{where} tensor {name!r}"
        dtype, shape = fmt.need_dtype(t, "dtype", where), fmt.need_shape(t, "shape", where)
        size = fmt.need_int(t, "nbytes", where)
        if size != fmt.nbytes(dtype, shape):
            raise fmt.bad(where, f"nbytes {size} is not the size of {dtype}{list(shape)}")
        region = fmt.need_str(t, "region", where, ("weights", "arena"))
        offset = fmt.need_int(t, "offset", where)
        limit = self.weights_bytes if region == "weights" else self.arena_bytes
        if offset % fmt.GPU_ALIGN or offset + size > limit:
            raise fmt.bad(
                where, f"range [{offset}, {offset + size}) is unaligned or outside its {region} region ({limit} bytes)"
            )
        entry = {"dtype": dtype, "shape": list(shape), "nbytes": size, "region": region, "offset": offset}
        if region == "weights":
            entry["store_offset"] = fmt.need_int(t, "store_offset", where)
        return entry

    def _dispatch(self, d: Any, partition: Partition, where: str) -> dict[str, Any]:
        label = fmt.need_str(d, "label", where)
        where = f"{where} dispatch {label!r}"
        kernel = fmt.need_str(d, "kernel", where)
        if kernel not in partition.artifact.files:
            raise fmt.bad(where, f"kernel {kernel!r} is not one of the partition's files")
        bindings = fmt.need_list(d, "bindings", where, str)
        unknown = [b for b in bindings if b not in self.tensors]
        if unknown or not bindings:
            raise fmt.bad(where, f"it binds unknown tensor {unknown[0]!r}" if unknown else "it binds nothing")
        groups = fmt.need_list(d, "groups", where, int)
        if len(groups) != 3 or min(groups) < 1:
            raise fmt.bad(where, f"groups {groups} are not three positive counts")
        barrier = d.get("barrier", True)  # a program without the field waits before every dispatch
        if not isinstance(barrier, bool):
            raise fmt.bad(where, f"barrier {barrier!r} is not true or false")
        subgroup = fmt.need_int(d, "subgroup_size", where, 4, 128) if "subgroup_size" in d else None
        if subgroup is not None and subgroup not in SUBGROUP_SIZES:
            raise fmt.bad(where, f"subgroup_size {subgroup} is not a power of two")
        entry = {"label": label, "kernel": kernel, "bindings": bindings, "groups": groups, "barrier": barrier}
        return entry | {"subgroup_size": subgroup}

    def missing(self, kernel: str, capabilities: set[int], features: dict[str, bool], where: str) -> list[str]:
        """What `kernel` (its SPIR-V capabilities given) needs that the device's `features` lack; a kernel whose
        capabilities need more than the program declares for it is refused."""
        needs = set(kernel_needs(capabilities))
        if self.kernel_requires is not None:
            undeclared = sorted(needs - set(self.kernel_requires.get(kernel, [])))
            if undeclared:
                raise fmt.bad(where, f"kernel {kernel} needs {undeclared[0]}, which its program does not declare")
            needs |= set(self.kernel_requires.get(kernel, []))
        subgroup = any(d["subgroup_size"] for d in self.dispatches if d["kernel"] == kernel)
        needs |= {"subgroupSizeControl", "computeFullSubgroups"} if subgroup else set()
        return sorted(n for n in needs | set(self.requires) if not features.get(n))

    def weight_sources(self) -> list[tuple[str, int]]:
        """(tensor, offset in the tensor store) of every weight."""
        return [(name, t["store_offset"]) for name, t in self.tensors.items() if t["region"] == "weights"]

    def check_feeds(self, feeds: dict[str, np.ndarray], kept: dict[str, str]) -> None:
        """Every input fed with its dtype and shape; a `kept` one may be left out."""
        for name, (dtype, shape) in self._expected.items():
            x = feeds.get(name)
            if x is None and name in kept:
                continue
            if x is None or x.dtype != dtype or x.shape != shape:
                got = "missing" if x is None else f"{x.dtype}{list(x.shape)}"
                raise InputError(f"GPU input {name!r} is {got}, expected {dtype}{list(shape)}; feed that")
