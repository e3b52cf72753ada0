"""The simulated XDNA NPU: runs an xclbin-ref-v1 program on the CPU with the NPU's numerics (bf16 operands, fp32
GEMM accumulation, bf16 elementwise results) and times it on a virtual clock with the times the compiler's XDNA
model (ragc/costmodel/npu.py) wrote into the program: each kernel's, one host sync per launch, a cold start after
the array sat idle.
Every time it reports is simulated (StepTiming.simulated = True), never measured."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from runtime_min import format as fmt
from runtime_min.backends.base import Backend, Executable, StepTiming
from runtime_min.backends.npu_program import NpuProgram, decode, encode, load_program, run_program
from runtime_min.errors import BundleError
from runtime_min.manifest import Bundle, Partition
from runtime_min.options import LoadOptions


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free form


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    """AMD's bf16 GeLU kernel uses the tanh approximation."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _softmax_rows(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# kernel kind -> fp32 function of the fp32 values of its (bf16) input buffers
KERNELS: dict[str, Callable[..., np.ndarray]] = {
    "matmul": lambda a, b: np.matmul(a, b, dtype=np.float32),
    "add": np.add,
    "mul": np.multiply,
    "relu": lambda x: np.maximum(x, np.float32(0)),
    "gelu": _gelu_tanh,
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "swish": lambda x: x * _sigmoid(x),
    "softmax": _softmax_rows,
}


class NpuSimExecutable(Executable):
    """One NPU partition on the simulator; the virtual NPU clock starts at 0 at prepare and only moves by
    simulated time. A run after the NPU sat idle (wall time) longer than idle_power_down_ms pays cold_start_ms."""

    def __init__(self, program: NpuProgram, where: str) -> None:
        self.program = program
        launch = fmt.need(program.launch, "host_sync_ms", (int, float), where) if program.launch else None
        self.host_sync_ms = float(launch or 0.0)
        self.cold_start_ms = float(fmt.need_number(program.launch, "cold_start_ms", where) or 0.0)
        self.power_down_ms = float(fmt.need_number(program.launch, "idle_power_down_ms", where) or math.inf)
        self.kernel_ms = [fmt.need_number(step, "simulated_ms", where) or 0.0 for step in program.steps]
        self.clock_ns = 0
        self._last_end: float | None = None  # perf_counter() when the previous run finished
        self._timings: list[StepTiming] = []

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        idle_ms = math.inf if self._last_end is None else (time.perf_counter() - self._last_end) * 1e3
        self._timings = []
        if idle_ms >= self.power_down_ms:
            self._advance("cold_start", self.cold_start_ms)
        self._advance("host_sync", self.host_sync_ms)
        outputs = run_program(self.program, feeds, self._call)
        self._last_end = time.perf_counter()
        return outputs

    def timings(self) -> list[StepTiming]:
        return list(self._timings)

    def _call(self, step: dict[str, Any], buffers: list[np.ndarray]) -> np.ndarray:
        ref = step["kernel"]
        args = self.program.data_args(step)
        if ref["kernel"] not in KERNELS:
            raise BundleError(f"NPU step {step['op']} calls unknown kernel {ref['kernel']!r}: recompile the bundle")
        values = [decode(buf, arg["dtype"]) for buf, arg in zip(buffers, args, strict=False)]
        result = KERNELS[ref["kernel"]](*values)
        dims = list(ref["dims"].values())
        label = f"{step['op']}:{ref['kernel']} {'x'.join(map(str, dims))}"
        self._advance(label, self.kernel_ms[self.program.steps.index(step)])
        return encode(result, args[-1]["dtype"])

    def _advance(self, label: str, ms: float) -> None:
        duration = round(ms * 1e6)
        self._timings.append(StepTiming(label, self.clock_ns, duration, simulated=True))
        self.clock_ns += duration


class NpuSimBackend(Backend):
    """device "npu", simulated: chosen by runtime_min.load(..., npu="sim") or RAGC_NPU=sim."""

    device = "npu"
    simulated = True

    @classmethod
    def open(cls, options: LoadOptions) -> NpuSimBackend:
        return cls()

    def prepare(self, partition: Partition, bundle: Bundle) -> NpuSimExecutable:
        return NpuSimExecutable(load_program(partition, bundle), f"partition {partition.id}")

    def describe(self) -> str:
        return "npu (simulated XDNA, bf16 on the CPU; times are modelled, not measured)"
