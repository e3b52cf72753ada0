"""A RECORDING STAND-IN for XRT's `pyxrt` module, for tests only: it is not XRT and drives no hardware.

Tests put this folder on sys.path so `import pyxrt` finds it. It mirrors the surface of the real bindings
(XRT src/python/pybind11/src/pyxrt.cpp: device, xclbin, hw_context, kernel, run, bo with bo.flags values
exported onto bo, xclBOSyncDirection, ert_cmd_state), records every call in `CALLS`, and raises ProtocolError
(an AssertionError, so no backend can swallow it) when the caller breaks the documented protocol: an xclbin
used before it is registered, a kernel name the xclbin lacks, buffer flags or group ids other than the NPU
layout (instructions: cacheable, group_id(1); data: host_only, group_id(3 + i)), opcode other than 3, an
instruction count that is not the instruction buffer's 32-bit words, a buffer of the wrong size, data not synced
to the device before the run, or a result read before it is synced back.

A stand-in xclbin is a JSON file (written by the tests) listing the modes of a family xclbin, keyed by the first
word of the instruction stream; the kernel call computes that mode's result in numpy from the device copies of
the buffers, so outputs can be checked.
`configure(no_device=..., wait_state=..., user_pointers=...)` simulates a machine without an NPU, a run that fails,
or an older XRT without user-pointer bos (`ext.bo(device, userptr, size)`: a bo over the caller's memory, the
pointer passed as a PyCapsule, as pybind11 takes a `void*`).
"""

from __future__ import annotations

import ctypes
import enum
import json
import math
import sys
import types
from typing import Any

import numpy as np

CALLS: list[tuple[str, dict[str, Any]]] = []
_CONFIG: dict[str, Any] = {}


class ProtocolError(AssertionError):
    """The caller used pyxrt in a way the real bindings or driver would reject."""


def reset() -> None:
    CALLS.clear()
    configure()


def configure(*, no_device: bool = False, wait_state: ert_cmd_state | None = None, user_pointers: bool = True) -> None:
    _CONFIG.update(no_device=no_device, wait_state=wait_state)
    module = sys.modules[__name__]
    if user_pointers and not hasattr(module, "ext"):
        module.ext = _EXT
    elif not user_pointers and hasattr(module, "ext"):
        del module.ext


def _record(call: str, **details: Any) -> None:
    CALLS.append((call, details))


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ProtocolError(message)


class xclBOSyncDirection(enum.Enum):  # noqa: N801 - the real binding's name
    XCL_BO_SYNC_BO_TO_DEVICE = 0
    XCL_BO_SYNC_BO_FROM_DEVICE = 1


class ert_cmd_state(enum.Enum):  # noqa: N801 - the real binding's name
    ERT_CMD_STATE_NEW = 1
    ERT_CMD_STATE_QUEUED = 2
    ERT_CMD_STATE_RUNNING = 3
    ERT_CMD_STATE_COMPLETED = 4
    ERT_CMD_STATE_ERROR = 5
    ERT_CMD_STATE_ABORT = 6
    ERT_CMD_STATE_TIMEOUT = 8


class uuid:  # noqa: N801
    def __init__(self, text: str) -> None:
        self.text = text

    def to_string(self) -> str:
        return self.text


class device:  # noqa: N801
    def __init__(self, index: int = 0) -> None:
        _record("device", index=index)
        if _CONFIG.get("no_device"):
            raise RuntimeError("No devices found")  # what XRT says on a machine without the driver
        self.registered: dict[str, xclbin] = {}

    def register_xclbin(self, xb: xclbin) -> uuid:
        _record("register_xclbin", path=xb.path)
        self.registered[xb.get_uuid().to_string()] = xb
        return xb.get_uuid()


class xclbin:  # noqa: N801
    class xclbinkernel:  # noqa: N801
        def __init__(self, name: str) -> None:
            self.name = name

        def get_name(self) -> str:
            return self.name

    def __init__(self, path: str) -> None:
        _record("xclbin", path=path)
        self.path = path
        try:
            with open(path) as f:
                self.spec = json.load(f)
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"failed to load xclbin {path}: {exc}") from exc

    def get_uuid(self) -> uuid:
        return uuid(self.spec["uuid"])

    def get_kernels(self) -> list[xclbin.xclbinkernel]:
        return [xclbin.xclbinkernel(self.spec["kernel_name"])]


class hw_context:  # noqa: N801
    def __init__(self, dev: device, id_: uuid) -> None:
        _record("hw_context", uuid=id_.to_string())
        _require(id_.to_string() in dev.registered, "hw_context for an xclbin not registered with the device")
        self.xclbin = dev.registered[id_.to_string()]


class bo:  # noqa: N801
    class flags(enum.Enum):  # noqa: N801
        normal = 0
        cacheable = 1 << 24
        device_only = 1 << 28
        host_only = 1 << 29
        p2p = 1 << 30
        svm = 1 << 27

    normal, cacheable, device_only = flags.normal, flags.cacheable, flags.device_only
    host_only, p2p, svm = flags.host_only, flags.p2p, flags.svm

    def __init__(self, dev: device, size: int, flags: bo.flags, group: int) -> None:
        _record("bo", size=size, flags=flags.name, group=group)
        _require(isinstance(dev, device) and isinstance(flags, bo.flags), "bo(device, size, bo.flags, group_id)")
        _require(size > 0, "zero-sized buffer object")
        self.nbytes, self.flag, self.group = int(size), flags, group
        self.host, self.dev = bytearray(self.nbytes), bytearray(self.nbytes)
        self.host_newer = self.dev_newer = False

    def write(self, data: Any, seek: int) -> None:
        raw = memoryview(np.ascontiguousarray(data)).cast("B")
        _record("bo.write", group=self.group, nbytes=raw.nbytes, seek=seek)
        _require(seek + raw.nbytes <= self.nbytes, f"write of {raw.nbytes} B at {seek} overflows a {self.nbytes} B bo")
        self.host[seek : seek + raw.nbytes] = raw
        self.host_newer = True

    def sync(self, direction: xclBOSyncDirection) -> None:
        _record("bo.sync", group=self.group, direction=direction.name)
        if direction is xclBOSyncDirection.XCL_BO_SYNC_BO_TO_DEVICE:
            self.dev[:], self.host_newer = self.host, False
        else:
            self.host[:], self.dev_newer = self.dev, False

    def read(self, size: int, skip: int) -> np.ndarray:
        _record("bo.read", group=self.group, size=size, skip=skip)
        _require(not self.dev_newer, "bo read before sync(XCL_BO_SYNC_BO_FROM_DEVICE): the host copy is stale")
        return np.frombuffer(bytes(self.host[skip : skip + size]), dtype=np.int8)  # the real read returns char

    def size(self) -> int:
        return self.nbytes


class _UserPointerBo(bo):
    """ext.bo over caller memory: the host side *is* that memory (no copy into the bo)."""

    def __init__(self, dev: device, userptr: Any, size: int) -> None:
        _record("ext.bo", size=size)
        _require(isinstance(dev, device), "ext.bo(device, userptr, size)")
        get = ctypes.pythonapi.PyCapsule_GetPointer
        get.restype, get.argtypes = ctypes.c_void_p, (ctypes.py_object, ctypes.c_char_p)
        _require(type(userptr).__name__ == "PyCapsule", "ext.bo takes the user pointer as a PyCapsule (void*)")
        address = get(userptr, None)
        _require(address % 4096 == 0, "user-pointer bos must start on a page boundary")
        self.nbytes, self.flag, self.group = int(size), bo.host_only, None
        self.host = memoryview((ctypes.c_char * size).from_address(address)).cast("B")
        self.dev = bytearray(self.nbytes)
        self.host_newer = self.dev_newer = False

    def write(self, data: Any, seek: int) -> None:
        self.host_newer = True
        super().write(data, seek)

    def sync(self, direction: xclBOSyncDirection) -> None:
        if direction is xclBOSyncDirection.XCL_BO_SYNC_BO_TO_DEVICE:
            self.host_newer = True  # the caller wrote the shared memory directly
        super().sync(direction)


_EXT = types.SimpleNamespace(bo=_UserPointerBo)
ext = _EXT


class run:  # noqa: N801
    def __init__(self, state: ert_cmd_state) -> None:
        self.final = state

    def wait(self, timeout_ms: int = 0) -> ert_cmd_state:
        _record("run.wait", state=self.final.name)
        return self.final


def _bf16(u16: np.ndarray) -> np.ndarray:
    return (u16.astype(np.uint32) << 16).view(np.float32)


def _to_bf16(x: np.ndarray) -> np.ndarray:
    bits = x.astype(np.float32).view(np.uint32)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def _logistic(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


_MATH = {
    "matmul": lambda a, b: a @ b,
    "gemv": lambda a, b: a @ b,
    "add": lambda a, b: a + b,
    "mul": lambda a, b: a * b,
    "relu": lambda x: np.where(x > 0, x, 0),
    "gelu": lambda x: 0.5 * x * (1 + np.tanh(0.7978845608 * (x + 0.044715 * x * x * x))),
    "sigmoid": _logistic,
    "tanh": np.tanh,
    "swish": lambda x: x * _logistic(x),
    "softmax": lambda x: _normalise(np.exp(x - x.max(-1, keepdims=True))),
}


_INTS = {"int8": np.int8, "int32": np.int32}
_ARITY = {"matmul": 2, "gemv": 2}  # stand-in xclbins compute the plain op (no epilogue operands)


def _values(raw: bytes, want: dict[str, Any]) -> np.ndarray:
    if want["dtype"] in _INTS:
        return np.frombuffer(raw, _INTS[want["dtype"]]).astype(np.int64).reshape(want["shape"])
    return _bf16(np.frombuffer(raw, np.uint16)).reshape(want["shape"])


def _normalise(e: np.ndarray) -> np.ndarray:
    return e / e.sum(-1, keepdims=True)


class kernel:  # noqa: N801
    def __init__(self, ctx: hw_context, name: str) -> None:
        _record("kernel", name=name)
        self.ctx, self.name = ctx, name
        self.spec = ctx.xclbin.spec
        _require(name == self.spec["kernel_name"], f"kernel {name!r} is not in the xclbin")

    def group_id(self, index: int) -> int:
        _record("kernel.group_id", index=index)
        most = max(len(m["buffers"]) for m in self.spec["modes"].values())
        _require(0 <= index < 3 + most, f"argument {index} out of range")
        return index

    def __call__(self, *args: Any) -> run:
        _record("kernel.call", opcode=args[0], count=args[2], n_bos=len(args) - 3)
        opcode, instr, count, *data = args
        _require(opcode == 3, f"opcode {opcode}, NPU transaction kernels take 3")
        _require(instr.flag is bo.cacheable and instr.group == 1, "instruction bo must be cacheable on group_id(1)")
        _require(not instr.host_newer and count == instr.nbytes // 4, "instruction count/sync does not match its bo")
        mode = f"{int.from_bytes(bytes(instr.dev[:4]), 'little'):08x}"  # the runtime parameter picking the op
        _require(mode in self.spec["modes"], f"instruction stream selects mode {mode}, not in the xclbin")
        spec = self.spec["modes"][mode]
        buffers = spec["buffers"]
        _require(len(data) == len(buffers), f"{len(data)} data bos, the kernel takes {len(buffers)}")
        for i, (b, want) in enumerate(zip(data, buffers, strict=True)):
            shared = isinstance(b, _UserPointerBo)
            _require(
                b.flag is bo.host_only and (shared or b.group == 3 + i),
                f"data bo {i} must be host_only on group_id({3 + i})",
            )
            _require(b.nbytes == want["bytes"], f"data bo {i} is {b.nbytes} B, the kernel takes {want['bytes']} B")
            _require(not b.host_newer, f"data bo {i} written but not synced to the device")
        values = [_values(bytes(b.dev), w) for b, w in zip(data[:-1], buffers[:-1], strict=True)]
        result = _MATH[spec["kind"]](*values[: _ARITY.get(spec["kind"], len(values))])
        for kind, operand in spec.get("epilogue", []):  # bias / add / mul read data bo `operand`
            result = (
                result + values[operand]
                if kind in ("bias", "add")
                else _MATH[kind](result, values[operand])
                if kind == "mul"
                else _MATH[kind](result)
            )
        out, want = data[-1], buffers[-1]
        raw = _to_bf16(result) if want["dtype"] == "bfloat16" else result.astype(_INTS.get(want["dtype"], np.float32))
        out.dev[:] = raw.tobytes()
        out.dev_newer = True
        return run(_CONFIG.get("wait_state") or ert_cmd_state.ERT_CMD_STATE_COMPLETED)


def write_xclbin(path: str, modes: dict[str, dict[str, Any]], kernel_name: str = "MLIR_AIE") -> None:
    """Write a stand-in xclbin: `modes` maps the first instruction word (8 hex digits, the runtime parameter that
    picks the op of a family xclbin) to {"kind", "buffers" (dtype, shape, bytes of each data argument),
    "epilogue" (optional [kind, data argument index] pairs applied after the op: bias/add/mul read that argument,
    activations none)}."""
    sizes = {"bfloat16": 2, "float32": 4, "int8": 1, "int32": 4}
    for mode in modes.values():
        assert all(b["bytes"] == math.prod(b["shape"]) * sizes[b["dtype"]] for b in mode["buffers"])
    spec = {"uuid": f"fake:{path}", "kernel_name": kernel_name, "modes": modes}
    with open(path, "w") as f:
        json.dump(spec, f)
