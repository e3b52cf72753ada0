"""The real XDNA NPU through XRT's Python bindings (pyxrt): prebuilt mlir-aie xclbins found on RAGC_XCLBIN_PATH.

The call sequence is the one AMD documents and mlir-aie uses (python/utils/xrt.py, AIE_Application and
AIE_Buffer; bindings in XRT src/python/pybind11/src/pyxrt.cpp):
    device = pyxrt.device(0); xclbin = pyxrt.xclbin(path); device.register_xclbin(xclbin)
    context = pyxrt.hw_context(device, xclbin.get_uuid()); kernel = pyxrt.kernel(context, "MLIR_AIE")
    instr = pyxrt.bo(device, n_words * 4, pyxrt.bo.cacheable, kernel.group_id(1)); write; sync to device
    data  = pyxrt.bo(device, nbytes, pyxrt.bo.host_only, kernel.group_id(3 + i))
    run = kernel(3, instr, n_words, *data); run.wait() == ert_cmd_state.ERT_CMD_STATE_COMPLETED; sync back; read
Hardware contexts are opened once per xclbin and shared by every step that uses it; an XDNA array holds at most
6 (XDNA) or 16 (XDNA2) at a time, so a plan needing more xclbins than that cannot start here.

Buffers: where pyxrt has user-pointer bos (`pyxrt.ext.bo(device, userptr, size)`, recent XRT; the `void*` goes
in as a PyCapsule), every data buffer is a page-aligned host array allocated once at prepare with a bo over that
same memory: inputs are laid out straight into it and results read as views of it, so the `bo.write` and
`bo.read` copies are avoided (`copy_stats` counts them as avoided). Otherwise each input is copied once into its
host_only bo (`bo.write`) and each result once out of it (`bo.read`).

Launches: each step is its own run (submit, wait), because the host lays out each step's inputs from the previous
steps' results (padding, im2col, reshapes); the compiler's timing model and the simulator assume each segment
(consecutive steps of one xclbin) runs as one run list with those layouts done by the DMAs, as a compiled design
would. That gap is listed in docs/npu.md.
"""

from __future__ import annotations

import ctypes
import time
from pathlib import Path
from typing import Any

import numpy as np

from runtime_min.backends.base import Backend, CopyStats, Executable, StepTiming
from runtime_min.backends.npu_program import STORAGE, NpuProgram, load_program, run_program
from runtime_min.errors import BackendUnavailable, DeviceFailure
from runtime_min.manifest import Bundle, Partition
from runtime_min.options import LoadOptions

MAX_HW_CONTEXTS = {"npu": 6, "npu2": 16}  # hardware contexts an XDNA (npu) or XDNA2 (npu2) array holds at once
PAGE = 4096  # user-pointer bos must start on a page
_capsule = ctypes.pythonapi.PyCapsule_New
_capsule.restype, _capsule.argtypes = ctypes.py_object, (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p)


def has_user_pointer_bos(xrt: Any) -> bool:
    """Whether this pyxrt builds bos over host memory (pyxrt.ext.bo)."""
    return hasattr(getattr(xrt, "ext", None), "bo")


def aligned_bytes(nbytes: int) -> np.ndarray:
    """A zeroed, page-aligned host array of `nbytes` bytes."""
    raw = np.zeros(nbytes + PAGE, np.uint8)
    start = -raw.ctypes.data % PAGE
    return raw[start : start + nbytes]


def read_instructions(path: Path) -> np.ndarray:
    """An mlir-aie instruction stream as uint32 words: `insts*.txt` holds one hex word per line (read_insts in
    python/utils/xrt.py), `insts*.bin` the raw little-endian words."""
    if path.suffix == ".txt":
        return np.array([int(line, 16) for line in path.read_text().split()], dtype=np.uint32)
    return np.fromfile(path, dtype="<u4")


class _Kernel:
    """One xclbin opened on the device: its registration, hardware context and MLIR_AIE kernel handle."""

    def __init__(self, xrt: Any, device: Any, xclbin_path: Path, kernel_name: str) -> None:
        self.xclbin = xrt.xclbin(str(xclbin_path))
        device.register_xclbin(self.xclbin)
        self.context = xrt.hw_context(device, self.xclbin.get_uuid())
        self.kernel = xrt.kernel(self.context, kernel_name)


class _Step:
    """One kernel invocation with its instruction buffer and data buffers allocated once, at prepare."""

    def __init__(
        self, xrt: Any, device: Any, kernel: _Kernel, insts: np.ndarray, program: NpuProgram, step: dict[str, Any]
    ) -> None:
        self.xrt, self.kernel, self.n_words = xrt, kernel.kernel, int(insts.size)
        to_device = xrt.xclBOSyncDirection.XCL_BO_SYNC_BO_TO_DEVICE
        self.instr = xrt.bo(device, insts.nbytes, xrt.bo.cacheable, self.kernel.group_id(1))
        self.instr.write(insts, 0)
        self.instr.sync(to_device)
        self.args = program.data_args(step)
        self.constant = ["weight" in entry for entry in step["inputs"]] + [False]
        self.host = [aligned_bytes(a["bytes"]) for a in self.args] if has_user_pointer_bos(xrt) else None
        if self.host is not None:  # bos over the host arrays: no bo.write / bo.read copies
            self.bos = [xrt.ext.bo(device, _capsule(h.ctypes.data, None, None), h.nbytes) for h in self.host]
        else:
            groups = [self.kernel.group_id(a["group_id"]) for a in self.args]
            self.bos = [xrt.bo(device, a["bytes"], xrt.bo.host_only, g) for a, g in zip(self.args, groups, strict=True)]
        self.stats = CopyStats()  # runs are counted by the executable
        for i, entry in enumerate(step["inputs"]):
            if "weight" in entry:  # weights go to the device once
                self._fill(i, program.weights[entry["weight"]])
                self.bos[i].sync(to_device)

    def __call__(self, op: str, buffers: list[np.ndarray]) -> np.ndarray:
        try:
            return self._execute(op, buffers)
        except RuntimeError as exc:  # pyxrt reports driver and DMA errors as RuntimeError
            raise DeviceFailure(f"NPU kernel for {op} failed ({exc}): check `xrt-smi examine`, then reload") from exc

    def _fill(self, i: int, data: np.ndarray) -> None:
        """Put one input's bytes where its bo reads them: into the shared host array, else through bo.write."""
        raw = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        if self.host is not None:
            self.host[i][:] = raw
        else:
            self.bos[i].write(raw, 0)

    def _execute(self, op: str, buffers: list[np.ndarray]) -> np.ndarray:
        xrt = self.xrt
        for i, (buf, constant) in enumerate(zip(buffers, self.constant, strict=False)):
            if not constant:
                self._fill(i, buf)
                self.stats.count(0 if self.host is not None else 1, buf.nbytes, avoided=int(self.host is not None))
                self.bos[i].sync(xrt.xclBOSyncDirection.XCL_BO_SYNC_BO_TO_DEVICE)
        state = self.kernel(3, self.instr, self.n_words, *self.bos).wait()
        if state != xrt.ert_cmd_state.ERT_CMD_STATE_COMPLETED:
            raise DeviceFailure(f"NPU kernel for {op} ended in state {state}: check `xrt-smi examine`, then reload")
        out, arg = self.bos[-1], self.args[-1]
        out.sync(xrt.xclBOSyncDirection.XCL_BO_SYNC_BO_FROM_DEVICE)
        if self.host is not None:  # output_tensor decodes it into a fresh array before the next run refills it
            self.stats.count(0, arg["bytes"], avoided=1)
            raw = self.host[-1]
        else:
            self.stats.count(1, arg["bytes"])
            raw = np.asarray(out.read(arg["bytes"], 0))
        return raw.view(STORAGE[arg["dtype"]]).reshape(arg["shape"])


class NpuXrtExecutable(Executable):
    def __init__(self, program: NpuProgram, steps: list[_Step]) -> None:
        self.program = program
        self.steps = {s["op"]: step for s, step in zip(program.calls, steps, strict=True)}
        self._timings: list[StepTiming] = []
        self._runs = 0

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._timings = []
        self._runs += 1
        return run_program(self.program, feeds, self._call)

    def copy_stats(self) -> CopyStats:
        """Host copies into and out of the data bos (bo.write, bo.read) since prepare."""
        return sum((step.stats for step in self.steps.values()), CopyStats(runs=self._runs))

    def _call(self, step: dict[str, Any], buffers: list[np.ndarray]) -> np.ndarray:
        start = time.perf_counter_ns()
        out = self.steps[step["op"]](step["op"], buffers)
        self._timings.append(
            StepTiming(f"{step['op']}:{step['kernel']['kernel']}", start, time.perf_counter_ns() - start)
        )
        return out

    def timings(self) -> list[StepTiming]:
        """Measured host-side wall time of each kernel call (write, sync, run, wait, sync back, read)."""
        return list(self._timings)


class NpuXrtBackend(Backend):
    device = "npu"

    def __init__(self, xrt: Any, device: Any, roots: list[Path]) -> None:
        self.xrt, self.xrt_device, self.roots = xrt, device, roots
        self.kernels: dict[Path, _Kernel] = {}  # one hardware context per xclbin, shared by all partitions

    @classmethod
    def open(cls, options: LoadOptions) -> NpuXrtBackend:
        try:
            import pyxrt  # the only place pyxrt is imported: lazily, by this backend
        except ImportError as exc:
            raise BackendUnavailable(
                f"pyxrt not importable ({exc}): install XRT with the amdxdna driver, or run with npu='sim'"
            ) from exc
        try:
            device = pyxrt.device(0)
        except Exception as exc:  # pyxrt raises RuntimeError for a missing device or driver
            raise BackendUnavailable(
                f"no XDNA NPU device ({exc}): load the amdxdna driver, or run with npu='sim'"
            ) from exc
        return cls(pyxrt, device, [Path(p) for p in options.xclbin_path])

    def locate(self, ref: dict[str, Any]) -> tuple[Path, Path]:
        """The xclbin and instruction file of a reference: <root>/<device>/<design>/<file>, first root wins."""
        for root in self.roots:
            folder = root / ref["device"] / ref["design"]
            if (folder / ref["xclbin"]).is_file() and (folder / ref["insts"]).is_file():
                return folder / ref["xclbin"], folder / ref["insts"]
        make = " ".join(f"{k}={v}" for k, v in sorted(ref["build_args"].items()))
        raise BackendUnavailable(
            f"xclbin {ref['device']}/{ref['design']}/{ref['xclbin']} (+ {ref['insts']}) not found on "
            f"RAGC_XCLBIN_PATH {[str(r) for r in self.roots]}: build mlir-aie programming_examples/{ref['design']} "
            f"with `make {make}` and copy both files there"
        )

    def prepare(self, partition: Partition, bundle: Bundle) -> NpuXrtExecutable:
        program = load_program(partition, bundle)
        located = [self.locate(step["kernel"]) for step in program.calls]
        limit = MAX_HW_CONTEXTS[program.device]
        needed = set(self.kernels) | {xclbin for xclbin, _ in located}
        if len(needed) > limit:
            raise BackendUnavailable(
                f"plan needs {len(needed)} xclbins but {program.device} holds {limit} hardware "
                "contexts: place fewer distinct NPU kernels (recompile)"
            )
        steps = []
        for step, (xclbin, insts) in zip(program.calls, located, strict=True):
            try:
                if xclbin not in self.kernels:
                    self.kernels[xclbin] = _Kernel(self.xrt, self.xrt_device, xclbin, step["kernel"]["kernel_name"])
                steps.append(
                    _Step(self.xrt, self.xrt_device, self.kernels[xclbin], read_instructions(insts), program, step)
                )
            except (RuntimeError, OSError, ValueError) as exc:  # pyxrt reports driver errors as RuntimeError
                raise BackendUnavailable(
                    f"cannot set up {xclbin} on the NPU ({exc}): check that it was built "
                    f"for {program.device} and signed for this driver"
                ) from exc
        return NpuXrtExecutable(program, steps)

    def describe(self) -> str:
        buffers = "user-pointer bos" if has_user_pointer_bos(self.xrt) else "host_only bos"
        return f"npu (XDNA through pyxrt, {len(self.kernels)} hardware contexts open, {buffers})"

    def close(self) -> None:
        self.kernels.clear()
