"""A "spirv-v2" GPU program (`pN.gpu.json`) read and checked against its partition and itself: every tensor's range
inside its region, every weight inside the tensor store, every binding a known tensor, every kernel a listed file.

Layout: {"version": 2, "weights_bytes", "arena_bytes", "inputs", "outputs",
         "tensors": {name: {"dtype", "shape", "nbytes", "region": "weights"|"arena", "offset", "store_offset"?}},
         "dispatches": [{"label", "kernel", "bindings": [tensor...], "groups": [x, y, z], "barrier"?}],
         "requires"?: [float-controls property names the kernels rely on]}
A dispatch with "barrier": false touches nothing the dispatches since the last barrier wrote (codegen/gpu/barriers.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runtime_min import format as fmt
from runtime_min.errors import InputError
from runtime_min.manifest import Partition

VERSION = 2
MAX_DISPATCHES = 1 << 16
KNOWN_REQUIREMENTS = ("shaderSignedZeroInfNanPreserveFloat32",)  # VkPhysicalDeviceFloatControlsProperties fields


class GpuProgram:
    def __init__(self, data: dict[str, Any], partition: Partition, where: str) -> None:
        fmt.need_int(data, "version", where, VERSION, VERSION)
        self.requires = fmt.need_list(data, "requires", where, str) if "requires" in data else []
        unknown = sorted(set(self.requires) - set(KNOWN_REQUIREMENTS))
        if unknown:
            raise fmt.bad(where, f"its kernels need {unknown[0]!r}, which this runtime does not know (a newer ragc?)")
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
        return {"label": label, "kernel": kernel, "bindings": bindings, "groups": groups, "barrier": barrier}

    def weight_sources(self) -> list[tuple[str, int]]:
        """(tensor, offset in the tensor store) of every weight."""
        return [(name, t["store_offset"]) for name, t in self.tensors.items() if t["region"] == "weights"]

    def check_feeds(self, feeds: dict[str, np.ndarray]) -> None:
        for name, (dtype, shape) in self._expected.items():
            x = feeds.get(name)
            if x is None or x.dtype != dtype or x.shape != shape:
                got = "missing" if x is None else f"{x.dtype}{list(x.shape)}"
                raise InputError(f"GPU input {name!r} is {got}, expected {dtype}{list(shape)}; feed that")
