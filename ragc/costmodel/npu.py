"""The one XDNA NPU timing model: the compiler's cost model and placement use it, and codegen writes the times it
gives into each NPU program (per step, per segment), which is what the simulator (runtime_min/backends/npu_sim.py)
replays.

It is built from the architecture (ragc/costmodel/npu_tiling.py: tile array, MAC rates, L1 and memtile sizes,
streams, DDR bandwidth, the tiling of each kernel onto the array) and from how XRT launches work:
- one hardware context per xclbin; consecutive steps of a partition that share an xclbin are one run list in that
  context (the mlir-aie pattern of one design with several instruction sequences, picked by runtime parameters);
- each run list ends in one host sync (submit and wait); each step in it costs one command of the chain;
- each change of xclbin inside a partition costs a context switch (the firmware loads the other design);
- a run after the array sat idle past its power-down time pays a cold start.
Every figure comes from the target file's npu section, each with its source; every time it gives is simulated.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from typing import Any

from ragc.costmodel import npu_tiling as tiling
from ragc.costmodel.npu_tiling import GemmTiling, XdnaArray
from ragc.errors import PersonalityError
from ragc.targets import NPU_KEYS, load_target

ARCHS = ("xdna", "xdna1", "xdna2")
DEFAULT_TARGET = "ryzen-ai-9-hx-370"  # whose npu section stands in when a personality has none
# Vector ops per element of each vector kernel (bf16): the mlir-aie kernels' AIE API calls (aie_kernels/aie2*);
# transcendental functions are a lookup table plus interpolation, about four ops. Estimates, see docs/npu.md.
ELEMENT_OPS = {
    "add": 1.0,
    "mul": 1.0,
    "relu": 1.0,
    "clip": 2.0,
    "sigmoid": 4.0,
    "tanh": 4.0,
    "gelu": 6.0,
    "swish": 6.0,
    "softmax": 6.0,
    "layernorm": 5.0,
    "rmsnorm": 4.0,
}
ROW_KERNELS = ("softmax", "layernorm", "rmsnorm")
GEMM_KINDS = ("matmul", "conv_grouped")
KERNEL_KINDS = (*GEMM_KINDS, "gemv", "attention", "dwconv", *ELEMENT_OPS)
OUT_BYTES = {"bfloat16": 2, "float32": 4, "int8": 1, "int32": 4}


@dataclass(frozen=True)
class XdnaLaunch:
    """What launching work on the array costs besides the kernels (each figure's source is in the target file)."""

    host_sync_ms: float  # one run list submitted and waited for
    runlist_entry_ms: float  # one more command in a chain
    context_switch_ms: float  # loading another xclbin's design into the array
    cold_start_ms: float  # first run after the array powered down
    idle_power_down_ms: float  # idle time after which it has


ARRAY_KEYS = tuple(f.name for f in fields(XdnaArray))
LAUNCH_KEYS = tuple(f.name for f in fields(XdnaLaunch))


class XdnaTiming:
    """Simulated time of NPU kernels and launches, from the `npu` section of a target file."""

    def __init__(self, array: XdnaArray, launch: XdnaLaunch) -> None:
        self.array, self.launch_costs = array, launch
        self._menus: dict[tuple[str, int], list[GemmTiling]] = {}

    @classmethod
    def from_params(cls, params: dict[str, Any] | None = None) -> XdnaTiming:
        """The model of a target's npu section; None: the default target's (ragc/targets/ryzen-ai-9-hx-370.json)."""
        if params is None:
            params = load_target(DEFAULT_TARGET)["npu"]
        missing = [k for k in NPU_KEYS if k not in params]
        if missing:
            raise PersonalityError(f"the npu section lacks {', '.join(missing)}: add them (with sources)")
        try:
            array = XdnaArray(**{k: params[k] for k in ARRAY_KEYS})
            launch = XdnaLaunch(**{k: float(params[k]) for k in LAUNCH_KEYS})
        except (TypeError, ValueError) as exc:
            raise PersonalityError(f"NPU timing parameters are malformed ({exc}): fix the npu section") from exc
        _check(array, launch)
        return cls(array, launch)

    @property
    def arch(self) -> str:
        return self.array.arch

    def gemm_plan(
        self,
        sizes: tuple[int, int, int],
        dtype: str,
        out_dtype: str,
        batch: int = 1,
        loaded: GemmTiling | None = None,
    ) -> tuple[GemmTiling, tuple[int, int, int]]:
        """The GEMM tiling for logical sizes M x K x N and the padded sizes it needs; `loaded` (the tiling of the
        GEMM just before in the partition) is kept unless another saves more than a context switch."""
        key = (dtype, OUT_BYTES[out_dtype])
        if key not in self._menus:
            self._menus[key] = tiling.gemm_candidates(self.array, dtype, key[1])
        keep = None if loaded is None else (loaded, self.switch_ms() / 1e3)
        return tiling.best_gemm(self.array, self._menus[key], sizes, dtype, key[1], batch, keep)

    def kernel_ms(self, ref: dict[str, Any]) -> float:
        """Simulated ms of one kernel invocation, from its reference (kind, padded dims, dtype, tiling, epilogue)."""
        kind, dims = ref["kernel"], ref["dims"]
        if kind not in KERNEL_KINDS:
            raise ValueError(f"no timing model for NPU kernel {kind!r}: use one of {', '.join(KERNEL_KINDS)}")
        a = self.array
        if kind in GEMM_KINDS:
            t = GemmTiling(**ref["tiling"])
            out = OUT_BYTES[ref["out_dtype"]]
            epilogue = ref.get("epilogue", [])
            operands = sum(1 for e in epilogue if e["kind"] in ("add", "mul"))
            extra = operands * dims["M"] * dims["N"] * 2
            seconds = tiling.gemm_seconds(
                a, t, dims["M"], dims["K"], dims["N"], ref["dtype"], out, extra, dims.get("G", 1)
            )
            seconds += len(epilogue) * dims.get("G", 1) * dims["M"] * dims["N"] / _vector_rate(a)
        elif kind == "gemv":
            seconds = tiling.gemv_seconds(a, dims["K"], dims["N"], ref["dtype"], OUT_BYTES[ref["out_dtype"]])
        elif kind == "attention":
            seconds = tiling.attention_seconds(
                a, dims["B"], dims["H"], dims["HKV"], dims["SQ"], dims["SKV"], dims["D"], bool(ref.get("causal"))
            )
        elif kind == "dwconv":
            outputs = dims["N"] * dims["C"] * dims["OH"] * dims["OW"]
            seconds = tiling.dwconv_seconds(a, outputs, dims["N"] * dims["C"] * dims["IH"] * dims["IW"], dims["KK"])
        elif kind in ROW_KERNELS:
            passes = tiling.rows_passes(a, dims["C"])
            seconds = tiling.vector_seconds(a, dims["R"] * dims["C"], 1, ELEMENT_OPS[kind], passes)
        else:
            inputs = 2 if kind in ("add", "mul") else 1
            seconds = tiling.vector_seconds(a, dims["L"], inputs, ELEMENT_OPS[kind])
        return seconds * 1e3

    def segments(self, xclbins: list[str]) -> list[dict[str, Any]]:
        """The run lists of a partition whose steps use `xclbins` in order: consecutive steps sharing an xclbin run
        as one list (one host sync); entering another xclbin is a context switch, the first list's too when the
        partition uses more than one (the previous run left the last one loaded)."""
        out: list[dict[str, Any]] = []
        switching = len(set(xclbins)) > 1
        for index, name in enumerate(xclbins):
            if out and out[-1]["xclbin"] == name:
                out[-1]["last"] = index
                continue
            out.append(
                {
                    "xclbin": name,
                    "first": index,
                    "last": index,
                    "context_switch_ms": self.launch_costs.context_switch_ms if switching else 0.0,
                    "host_sync_ms": self.launch_costs.host_sync_ms,
                }
            )
        return out

    def launch(self) -> dict[str, float]:
        """What the simulator needs per run besides the steps and segments: the per-command cost and cold start."""
        costs = self.launch_costs
        return {
            "runlist_entry_ms": costs.runlist_entry_ms,
            "cold_start_ms": costs.cold_start_ms,
            "idle_power_down_ms": costs.idle_power_down_ms,
        }

    def switch_ms(self) -> float:
        """What entering another xclbin inside a partition costs: the context switch and the run list's host sync."""
        return self.launch_costs.context_switch_ms + self.launch_costs.host_sync_ms

    def describe(self) -> dict[str, Any]:
        """The array's derived peaks, for reports: bf16 and int8 TOPS, DDR GB/s."""
        a = self.array
        return {
            "arch": a.arch,
            "tiles": a.tiles,
            "peak_tops": {d: round(2 * a.peak_macs_per_s(d) / 1e12, 2) for d in sorted(a.macs_per_cycle)},
            "ddr_gbps": round(a.dram_bytes_per_s() / 1e9, 1),
        }


def _vector_rate(a: XdnaArray) -> float:
    """Elements per second of a one-op bf16 epilogue over the whole array."""
    return a.tiles * a.vector_lanes["bf16"] * a.clock_ghz * 1e9


def _check(array: XdnaArray, launch: XdnaLaunch) -> None:
    if array.arch not in ARCHS:
        raise PersonalityError(f"unknown NPU arch {array.arch!r}: use one of {', '.join(ARCHS)}")
    numbers = {k: getattr(array, k) for k in ARRAY_KEYS if k not in ("arch", "macs_per_cycle", "mmul", "vector_lanes")}
    numbers.update({k: getattr(launch, k) for k in LAUNCH_KEYS})
    for name, value in numbers.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise PersonalityError(f"NPU timing parameter {name}={value!r} must be a number >= 0")
    for name in ("columns", "rows", "clock_ghz", "l1_bytes", "stream_bytes_per_cycle", "shim_channels", "ddr_gbps"):
        if not numbers[name] > 0:
            raise PersonalityError(f"NPU timing parameter {name}={numbers[name]!r} must be > 0")
    for name in ("macs_per_cycle", "vector_lanes", "mmul"):
        table = getattr(array, name)
        if not isinstance(table, dict) or not {"bf16", "int8"} <= set(table):
            raise PersonalityError(f"NPU timing parameter {name} must give bf16 and int8: {json.dumps(table)}")
