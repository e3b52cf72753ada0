"""The simulated XDNA NPU: runs an xclbin-ref-v2 program on the CPU with the NPU's numerics and times it on a
virtual clock with the times the compiler's XDNA model (ragc/costmodel/npu.py) wrote into the program: each
kernel's, one command per step, a context switch where a segment enters another xclbin, one host sync per
segment (run list), and a cold start after the array sat idle. Every time it reports is simulated
(StepTiming.simulated = True), never measured.

Numerics: bf16 operands, fp32 accumulation, bf16 results; int8 GEMMs exact in int32. GEMMs keep C in bf16 between
the K / k calls of their tiling, as the aie2p mm.cc kernels load and store it per call; the epilogue (bias,
scale, residual, gate, activation, requantization) runs on the fp32 accumulator of the last call.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from runtime_min.backends.base import Backend, Executable, StepTiming
from runtime_min.backends.npu_program import NpuProgram, decode, encode, load_program, run_program
from runtime_min.errors import BundleError
from runtime_min.format import round_bf16
from runtime_min.manifest import Bundle, Partition
from runtime_min.options import LoadOptions


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free form


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    """AMD's bf16 GeLU kernel uses the tanh approximation."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda x: np.maximum(x, np.float32(0)),
    "gelu": _gelu_tanh,
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "swish": lambda x: x * _sigmoid(x),
}


def epilogue(acc: np.ndarray, entries: list[dict[str, Any]], extra: dict[str, np.ndarray], axis: int) -> np.ndarray:
    """The fused chain on an fp32 accumulator; per-column operands broadcast along `axis` (the GEMM's N, or a
    depthwise conv's channels), full-size operands add or multiply elementwise."""
    for e in entries:
        kind = e["kind"]
        if kind == "bias":
            row = extra[e["input"]]
            shape = [1] * acc.ndim
            shape[axis] = row.size
            acc = acc + row.reshape(shape)
        elif kind == "scale":
            acc = acc * np.float32(e["value"])
        elif kind == "add":
            acc = acc + extra[e["input"]]
        elif kind == "mul":
            acc = acc * extra[e["input"]]
        elif kind == "clip":
            acc = np.clip(acc, e["min"], e["max"])
        elif kind == "requantize":
            acc = np.clip(np.rint(acc * e["value"]) + e["zero_point"], -128, 127)
        elif kind in ACTIVATIONS:
            acc = ACTIVATIONS[kind](acc)
        else:
            raise BundleError(f"unknown NPU epilogue {kind!r}: recompile the bundle with this ragc version")
    return acc


def _extras(step: dict[str, Any], values: list[np.ndarray], first: int) -> dict[str, np.ndarray]:
    return {entry["role"]: v for entry, v in zip(step["inputs"][first:], values[first:], strict=True)}


def _chunked(a: np.ndarray, b: np.ndarray, k: int, last: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """A @ B over K in chunks of k, C rounded to bf16 between chunks, `last` applied to the final fp32 sum."""
    c = np.zeros(a.shape[:-1] + b.shape[-1:], np.float32)
    for start in range(0, a.shape[-1], k):
        c = c + np.matmul(a[..., start : start + k], b[..., start : start + k, :], dtype=np.float32)
        if start + k < a.shape[-1]:
            c = round_bf16(c)
    return last(c)


def matmul(step: dict[str, Any], values: list[np.ndarray]) -> np.ndarray:
    ref = step["kernel"]
    a, b = values[:2]
    entries = ref.get("epilogue", [])
    if ref["dtype"] == "int8":
        acc = np.matmul(a.astype(np.int64), b.astype(np.int64)).astype(np.float64)
        return epilogue(acc, entries, {}, -1)
    extra = _extras(step, values, 2)
    k = ref["tiling"]["k"] if "tiling" in ref else a.shape[-1]  # a GEMV accumulates all of K in registers
    return _chunked(a, b, k, lambda c: epilogue(c, entries, extra, -1))


def softmax(step: dict[str, Any], values: list[np.ndarray]) -> np.ndarray:
    (x,) = values
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def norm(step: dict[str, Any], values: list[np.ndarray]) -> np.ndarray:
    """LayerNorm / RMSNorm over the first `cols` columns; the padding columns come out zero."""
    ref = step["kernel"]
    x, params = values[0], values[1:]
    cols = ref["cols"]
    real = x[:, :cols]
    if ref["kernel"] == "layernorm":
        centred = real - real.mean(axis=-1, keepdims=True)
        y = centred / np.sqrt((centred**2).mean(axis=-1, keepdims=True) + ref["epsilon"])
    else:
        y = real / np.sqrt((real**2).mean(axis=-1, keepdims=True) + ref["epsilon"])
    y = y * params[0][:cols]
    if len(params) > 1:
        y = y + params[1][:cols]
    out = np.zeros_like(x)
    out[:, :cols] = y
    return out


def attention(step: dict[str, Any], values: list[np.ndarray]) -> np.ndarray:
    """softmax(Q K^T scale + mask) V per head, K/V heads shared by groups of query heads; P rounded to bf16 for
    the PV product, padded keys (past the real count) masked out."""
    ref = step["kernel"]
    q, k, v = values
    group = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    scores = np.matmul(q, k.transpose(0, 1, 3, 2), dtype=np.float32) * np.float32(ref["scale"])
    rows, cols = np.arange(q.shape[2])[:, None], np.arange(k.shape[2])[None, :]
    masked = cols >= ref["sizes"]["skv"]
    if ref.get("causal"):
        masked = masked | (cols > rows)
    scores = np.where(masked, -np.inf, scores)
    scores = scores - scores.max(axis=-1, keepdims=True)
    p = np.exp(scores)
    p = round_bf16(p / p.sum(axis=-1, keepdims=True))
    return np.matmul(p, v, dtype=np.float32)


def dwconv(step: dict[str, Any], values: list[np.ndarray]) -> np.ndarray:
    """Depthwise convolution of the (already padded) input, one filter per channel, then the epilogue."""
    ref = step["kernel"]
    x, w = values[:2]
    (kh, kw), (sh, sw), (dh, dw) = ref["conv"]["kernel"], ref["conv"]["strides"], ref["conv"]["dilations"]
    oh, ow = ref["dims"]["OH"], ref["dims"]["OW"]
    acc = np.zeros(x.shape[:2] + (oh, ow), np.float32)
    for i in range(kh):
        for j in range(kw):
            window = x[:, :, i * dh : i * dh + sh * (oh - 1) + 1 : sh, j * dw : j * dw + sw * (ow - 1) + 1 : sw]
            acc += window * w[:, i * kw + j].reshape(1, -1, 1, 1)
    return epilogue(acc, ref.get("epilogue", []), _extras(step, values, 2), 1)


def _unary(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict[str, Any], list[np.ndarray]], np.ndarray]:
    return lambda step, values: fn(values[0])


def _clip(step: dict[str, Any], values: list[np.ndarray]) -> np.ndarray:
    low, high = step["kernel"]["bounds"]
    return np.clip(values[0], low, high)


# kernel kind -> function of (step, input values)
KERNELS: dict[str, Callable[[dict[str, Any], list[np.ndarray]], np.ndarray]] = {
    "matmul": matmul,
    "conv_grouped": matmul,
    "gemv": matmul,
    "softmax": softmax,
    "layernorm": norm,
    "rmsnorm": norm,
    "attention": attention,
    "dwconv": dwconv,
    "add": lambda step, v: v[0] + v[1],
    "mul": lambda step, v: v[0] * v[1],
    "clip": _clip,
    **{kind: _unary(fn) for kind, fn in ACTIVATIONS.items()},
}


class NpuSimExecutable(Executable):
    """One NPU partition on the simulator; the virtual NPU clock starts at 0 at prepare and only moves by
    simulated time. A run after the NPU sat idle (wall time) longer than idle_power_down_ms pays cold_start_ms."""

    def __init__(self, program: NpuProgram) -> None:
        self.program = program
        launch = program.launch
        self.entry_ms, self.cold_start_ms = launch["runlist_entry_ms"], launch["cold_start_ms"]
        self.power_down_ms = launch["idle_power_down_ms"] or math.inf
        self.before: dict[int, float] = {}  # step index -> context switch entering its segment
        self.after: dict[int, float] = {}  # step index -> host sync ending its segment
        for segment in program.segments:
            self.before[segment["steps"][0]] = float(segment["context_switch_ms"])
            self.after[segment["steps"][-1]] = float(segment["host_sync_ms"])
        self.index = {id(step): i for i, step in enumerate(program.steps)}
        self.clock_ns = 0
        self._last_end: float | None = None  # perf_counter() when the previous run finished
        self._timings: list[StepTiming] = []

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        idle_ms = math.inf if self._last_end is None else (time.perf_counter() - self._last_end) * 1e3
        self._timings = []
        if idle_ms >= self.power_down_ms:
            self._advance("cold_start", self.cold_start_ms)
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
        values = [decode(buf, arg["dtype"]).reshape(arg["shape"]) for buf, arg in zip(buffers, args, strict=False)]
        result = KERNELS[ref["kernel"]](step, values)
        index = self.index[id(step)]
        if self.before.get(index):
            self._advance("context_switch", self.before[index])
        dims = "x".join(map(str, ref["dims"].values()))
        self._advance(f"{step['op']}:{ref['kernel']} {dims}", self.entry_ms + float(step.get("simulated_ms") or 0.0))
        if index in self.after:
            self._advance("host_sync", self.after[index])
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
        program = load_program(partition, bundle)
        where = f"partition {partition.id}"
        for step in program.calls:
            if not isinstance(step.get("simulated_ms", 0.0), (int, float)) or isinstance(
                step.get("simulated_ms"), bool
            ):
                raise BundleError(f"{where}: step {step.get('op')!r} simulated_ms is not a number; recompile the model")
        return NpuSimExecutable(program)

    def describe(self) -> str:
        return "npu (simulated XDNA, bf16 on the CPU; times are modelled, not measured)"
