"""An "xclbin-ref-v2" NPU program as both NPU backends run it: load it (weights from the tensor store, its segments
and launch costs checked), lay tensors out into padded kernel buffers on the host (im2col, reshape, broadcast,
spatial padding), call each kernel in order, rename the alias steps' tensors, and cut the results back out."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime_min import format as fmt
from runtime_min.errors import BundleError, InputError
from runtime_min.format import from_bf16_bits, to_bf16_bits
from runtime_min.manifest import Bundle, Partition

STORAGE = {  # how each buffer dtype sits in memory
    "bfloat16": np.dtype("<u2"),
    "float32": np.dtype("<f4"),
    "int8": np.dtype("i1"),
    "int32": np.dtype("<i4"),
}
WEIGHT_DTYPES = {"bfloat16": "uint16", "int8": "int8"}  # weight entry dtype -> how the tensor store holds it
LAUNCH_KEYS = ("runlist_entry_ms", "cold_start_ms", "idle_power_down_ms")

MAX_ELEMENTS = 1 << 28  # no NPU buffer or host layout of a bundle may hold more (1 GiB of fp32)
KernelCall = Callable[[dict[str, Any], list[np.ndarray]], np.ndarray]  # (step, input buffers) -> output buffer


@dataclass
class NpuProgram:
    device: str  # mlir-aie device name: "npu" (XDNA) or "npu2" (XDNA2)
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    weights: dict[str, np.ndarray]  # key -> padded values in storage layout (bf16 as uint16 bits), kernel layout
    segments: list[dict[str, Any]]  # run lists: kernel step indices sharing an xclbin, with their launch costs
    launch: dict[str, float]  # per-command, cold start and power-down figures of the compiler's XDNA model

    @property
    def calls(self) -> list[dict[str, Any]]:
        """The kernel steps (alias steps left out), in order."""
        return [s for s in self.steps if "kernel" in s]

    def data_args(self, step: dict[str, Any]) -> list[dict[str, Any]]:
        """The step's data-buffer arguments (inputs then output) in call order."""
        return [a for a in step["kernel"]["arguments"] if "dtype" in a]


def load_program(partition: Partition, bundle: Bundle) -> NpuProgram:
    """Read the program JSON; its packed weights are views of the tensor store."""
    where = f"partition {partition.id} ({partition.artifact.main})"
    program = bundle.read_json(partition.artifact.main, where)
    try:
        weights = {}
        for key, entry in fmt.need(program, "weights", dict, where).items():
            dtype = fmt.need_str(entry, "dtype", f"{where} weight {key!r}", tuple(WEIGHT_DTYPES))
            weights[key] = bundle.store.tensor({**entry, "dtype": WEIGHT_DTYPES[dtype]}, f"{where} weight {key!r}")
        steps = fmt.need_list(program, "steps", where, dict)
        launch = fmt.need(program, "launch", dict, where)
        for key in LAUNCH_KEYS:
            if fmt.need_number(launch, key, f"{where} launch") is None:
                raise fmt.bad(where, f"launch {key!r} is missing")
        loaded = NpuProgram(
            fmt.need_str(program, "device", where, ("npu", "npu2")),
            fmt.need_list(program, "inputs", where, dict),
            fmt.need_list(program, "outputs", where, dict),
            steps,
            weights,
            _segments(program, steps, where),
            {k: float(launch[k]) for k in LAUNCH_KEYS},
        )
        for step in loaded.steps:
            _check_step(loaded, step, where)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise fmt.bad(where, f"the NPU program is malformed ({type(exc).__name__})") from None
    for sigs, specs in ((loaded.inputs, partition.inputs), (loaded.outputs, partition.outputs)):
        if [(s.get("name"), s.get("dtype"), tuple(s.get("shape", ()))) for s in sigs] != [
            (s.name, s.dtype, s.shape) for s in specs
        ]:
            raise fmt.bad(where, "its inputs and outputs are not the partition's (names, dtypes, shapes)")
    return loaded


def _check_step(program: NpuProgram, step: dict[str, Any], where: str) -> None:
    """Every buffer a step makes is bounded and of a known dtype; every weight it names exists."""
    where = f"{where} step {step.get('op')!r}"
    if "kernel" not in step:  # an alias step: a reshape of a tensor it names
        fmt.need_shape(fmt.need(step, "alias", dict, where), "shape", where)
        return
    for arg in program.data_args(step):
        shape = fmt.need_shape(arg, "shape", where)
        dtype = fmt.need_str(arg, "dtype", where, tuple(STORAGE))
        if (
            math.prod(shape) > MAX_ELEMENTS
            or fmt.need_int(arg, "bytes", where) != math.prod(shape) * STORAGE[dtype].itemsize
        ):
            raise fmt.bad(where, f"a kernel buffer of shape {list(shape)} is too large or its bytes are wrong")
    for entry in fmt.need_list(step, "inputs", where, dict):
        if "weight" in entry and entry["weight"] not in program.weights:
            raise fmt.bad(where, f"it reads weight {entry['weight']!r}, which the program does not hold")
        if "weight" not in entry and math.prod(fmt.need_shape(entry, "shape", where)) > MAX_ELEMENTS:
            raise fmt.bad(where, "an input layout is too large")
    fmt.need_shape(fmt.need(step, "output", dict, where), "shape", where)


def _segments(program: dict[str, Any], steps: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """The run lists, checked: every kernel step in exactly one, in order, each with its launch costs."""
    segments = fmt.need_list(program, "segments", where, dict)
    covered = []
    for k, segment in enumerate(segments):
        at = f"{where} segment {k}"
        indices = fmt.need_list(segment, "steps", at, int)
        if not indices:
            raise fmt.bad(at, "it lists no steps")
        for key in ("context_switch_ms", "host_sync_ms"):
            if fmt.need_number(segment, key, at) is None:
                raise fmt.bad(at, f"{key!r} is missing")
        covered += indices
    calls = [i for i, step in enumerate(steps) if "kernel" in step]
    if covered != calls:
        raise fmt.bad(where, "its segments do not list every kernel step once, in order")
    return segments


def encode(values: np.ndarray, dtype: str) -> np.ndarray:
    """Values -> a buffer's storage (bf16 bits rounded to nearest even, fp32, or the integers as they are)."""
    return to_bf16_bits(values) if dtype == "bfloat16" else np.ascontiguousarray(values, dtype=STORAGE[dtype])


def decode(storage: np.ndarray, dtype: str) -> np.ndarray:
    """A buffer's storage -> its values: fp32 for float buffers, the integers for int8 / int32 ones."""
    if dtype == "bfloat16":
        return from_bf16_bits(storage)
    return np.asarray(storage, dtype=np.float32 if dtype == "float32" else STORAGE[dtype])


def im2col(
    x: np.ndarray, kernel: list[int], strides: list[int], pads: list[int], dilations: list[int], output: list[int]
) -> np.ndarray:
    """NCHW input -> [N*OH*OW, C*kh*kw] patches; columns ordered (c, i, j) like a weight reshaped [Cout, -1]."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, strides, dilations, output
    padded = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    cols = [
        padded[:, :, i * dh : i * dh + sh * (oh - 1) + 1 : sh, j * dw : j * dw + sw * (ow - 1) + 1 : sw]
        for i in range(kh)
        for j in range(kw)
    ]  # kh*kw arrays of [N, C, OH, OW]
    patches = np.stack(cols, axis=2).reshape(x.shape[0], x.shape[1], kh, kw, oh, ow)
    return patches.transpose(0, 4, 5, 1, 2, 3).reshape(x.shape[0] * oh * ow, x.shape[1] * kh * kw)


def apply_transforms(x: np.ndarray, transforms: list[dict[str, Any]]) -> np.ndarray:
    """Host-side layout changes recorded by the compiler, applied in order."""
    for t in transforms:
        ((name, arg),) = t.items()
        if (
            name == "im2col"
            and x.shape[0] * math.prod(arg["output"]) * x.shape[1] * math.prod(arg["kernel"]) > MAX_ELEMENTS
        ):
            raise BundleError("an NPU im2col layout is too large; the bundle is corrupt or was tampered with")
        if name == "reshape":
            x = x.reshape(arg)
        elif name == "transpose":
            x = x.transpose(arg)
        elif name == "broadcast":
            x = np.broadcast_to(x, arg)
        elif name == "append_ones":
            x = np.concatenate([x, np.ones(x.shape[:-1] + (arg,), x.dtype)], axis=-1)
        elif name == "im2col":
            x = im2col(x, **arg)
        elif name == "group_columns":  # [M, G*K] -> [G, M, K]
            x = x.reshape(x.shape[0], arg, -1).transpose(1, 0, 2)
        elif name == "pad_spatial":  # NCHW, [top, left, bottom, right] zeros
            x = np.pad(x, ((0, 0), (0, 0), (arg[0], arg[2]), (arg[1], arg[3])))
        else:
            raise BundleError(f"unknown host transform {name!r} in NPU program: recompile with this ragc version")
    return x


def pad_to(x: np.ndarray, shape: list[int], pad_value: str) -> np.ndarray:
    out = np.full(shape, float(pad_value), dtype=np.float32 if x.dtype.kind == "f" else x.dtype)
    out[tuple(slice(0, s) for s in x.shape)] = x
    return out


def input_buffers(program: NpuProgram, step: dict[str, Any], tensors: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The step's input buffers, padded, in storage layout (bf16 bits), in argument order."""
    buffers = []
    for entry, arg in zip(step["inputs"], program.data_args(step), strict=False):
        if "weight" in entry:
            buffers.append(program.weights[entry["weight"]])
            continue
        x = apply_transforms(tensors[entry["tensor"]], entry["transforms"])
        if list(x.shape) != entry["shape"]:
            raise BundleError(
                f"NPU step {step['op']}: {entry['tensor']} laid out as {list(x.shape)}, "
                f"program expects {entry['shape']}: recompile the bundle"
            )
        buffers.append(encode(pad_to(x, arg["shape"], step["kernel"]["pad_value"]), arg["dtype"]))
    return buffers


def output_tensor(program: NpuProgram, step: dict[str, Any], storage: np.ndarray) -> np.ndarray:
    """Cut the logical result out of the padded output buffer and restore its layout."""
    out, arg = step["output"], program.data_args(step)[-1]
    values = decode(storage.reshape(arg["shape"]), arg["dtype"])
    values = values[tuple(slice(0, s) for s in out["shape"])]
    kind = np.float32 if values.dtype.kind == "f" else values.dtype
    return np.array(apply_transforms(values, out["transforms"]), dtype=kind, order="C")  # never a view of a buffer


def check_feeds(program: NpuProgram, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    tensors = {}
    for sig in program.inputs:
        if sig["name"] not in feeds:
            raise InputError(f"NPU partition input {sig['name']!r} missing: feed it ({sig['dtype']} {sig['shape']})")
        x = np.asarray(feeds[sig["name"]])
        if list(x.shape) != sig["shape"] or x.dtype != np.dtype(sig["dtype"]):
            raise InputError(
                f"NPU partition input {sig['name']!r} is {x.dtype} {list(x.shape)}, "
                f"expected {sig['dtype']} {sig['shape']}: feed that"
            )
        tensors[sig["name"]] = x
    return tensors


def run_program(program: NpuProgram, feeds: dict[str, np.ndarray], call: KernelCall) -> dict[str, np.ndarray]:
    """Run every step in order through `call` (a simulator or a device) and return the partition outputs; a step
    whose recorded layout does not fit its tensors is a BundleError, never a wrong-shaped result."""
    tensors = check_feeds(program, feeds)
    for step in program.steps:
        try:
            if "alias" in step:
                alias = step["alias"]
                tensors[alias["tensor"]] = tensors[alias["source"]].reshape(alias["shape"])
                continue
            storage = call(step, input_buffers(program, step, tensors))
            tensors[step["output"]["tensor"]] = output_tensor(program, step, storage)
        except (KeyError, ValueError, TypeError, IndexError, AttributeError, MemoryError) as exc:
            raise fmt.bad(
                f"NPU step {step.get('op')!r}", f"its recorded layout does not fit ({type(exc).__name__})"
            ) from None
    outputs = {sig["name"]: tensors.get(sig["name"]) for sig in program.outputs}
    for sig in program.outputs:
        value = outputs[sig["name"]]
        if value is None or list(value.shape) != sig["shape"]:
            raise fmt.bad(f"NPU output {sig['name']!r}", "the program's steps do not produce it as declared")
    return outputs
