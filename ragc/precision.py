"""`--precision`: each GPU partition compiled in reduced precision is checked against fp32 before it is kept.

The check runs the whole model in fp32 (onnxruntime) on seeded random inputs and on the same inputs scaled by
OVERFLOW_SCALE (pixels given as 0..255 instead of 0..1: large activations that overflow float16 where a model is
not normalised), which gives every partition's inputs and its fp32 outputs. The reduced-precision partition then
runs on those inputs: on this chip's Vulkan device when the compile is for this chip, else (a `--target`
cross-compile, or no Vulkan here) emulated by onnxruntime on the partition's ONNX model with every tensor the GPU
stores in 16 bits rounded through a Cast pair (storage rounding only: fp16 GEMM arithmetic is not emulated). Its
error, max |got - fp32| / max |fp32| over each float output (exact match for other dtypes, non-finite values where
fp32 is finite fail), must stay within TOLERANCE; otherwise the partition is compiled in fp32 and the note says why.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

import codegen
from codegen.artifact import Artifact, TensorStore
from codegen.gpu import storage_plan
from codegen.gpu.precision import PRECISIONS, Precision, choose
from ragc import ir
from ragc.partition import Partition

TOLERANCE = {"mixed": 1e-2, "fp16": 2e-2, "bf16": 5e-2}  # normalised max error per float output
OVERFLOW_SCALE = 255.0
SEED = 7
CAST_TO = {"float16": onnx.TensorProto.FLOAT16, "bfloat16": onnx.TensorProto.BFLOAT16}

FeedSet = tuple[dict[str, np.ndarray], dict[str, np.ndarray]]  # a partition's inputs, its fp32 outputs


@dataclass(frozen=True)
class Verdict:
    error: float  # the worst over every output and feed set
    how: str  # which check ran


def gpu_features(personality: Any) -> frozenset[str]:
    """The GPU's device features the personality records (`ragc profile` does; a target file may list them)."""
    gpu = personality.data.get("devices", {}).get("gpu", {})
    return frozenset(gpu.get("features", ()))


def _value_info(t: ir.Tensor) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(t.name, helper.np_dtype_to_tensor_dtype(np.dtype(t.dtype)), list(t.shape))


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _model_feeds(graph: ir.Graph, scale: float) -> dict[str, np.ndarray]:
    """Seeded model inputs: floats in [0, 1) times `scale`, integers 0 or 1, random bools."""
    rng = np.random.default_rng(SEED)
    feeds = {}
    for name in graph.inputs:
        t = graph.tensors[name]
        kind = np.dtype(t.dtype).kind
        if kind == "f":
            feeds[name] = (rng.random(t.shape) * scale).astype(t.dtype)
        elif kind == "b":
            feeds[name] = rng.random(t.shape) < 0.5
        else:
            feeds[name] = rng.integers(0, 2, t.shape).astype(t.dtype)
    return feeds


def feed_sets(model: onnx.ModelProto, graph: ir.Graph, parts: list[Partition]) -> dict[str, list[FeedSet]]:
    """Per partition id, its (inputs, fp32 outputs) on the random and on the scaled model inputs."""
    wanted = sorted({n for p in parts for n in (*p.graph.inputs, *p.graph.outputs)} - set(graph.inputs))
    probe = onnx.ModelProto.FromString(model.SerializeToString())
    probe.ir_version = helper.find_min_ir_version_for(list(probe.opset_import))  # what older onnxruntimes read
    known = {o.name for o in probe.graph.output}
    probe.graph.output.extend(_value_info(graph.tensors[n]) for n in wanted if n not in known)
    session = _session(probe)
    names = [o.name for o in session.get_outputs()]
    sets: dict[str, list[FeedSet]] = {p.id: [] for p in parts}
    for scale in (1.0, OVERFLOW_SCALE):
        feeds = _model_feeds(graph, scale)
        values = dict(zip(names, session.run(names, feeds), strict=True)) | feeds
        for p in parts:
            sets[p.id].append(({n: values[n] for n in p.graph.inputs}, {n: values[n] for n in p.graph.outputs}))
    return sets


def error(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> float:
    """The largest normalised error over the outputs (inf for a mismatch of a non-float output or a non-finite
    value where fp32 is finite)."""
    worst = 0.0
    for name, w in want.items():
        g = np.asarray(got[name])
        if w.dtype.kind != "f":
            worst = max(worst, 0.0 if np.array_equal(g, w) else np.inf)
            continue
        w64, g64 = w.astype(np.float64), g.astype(np.float64)
        finite = np.isfinite(w64)
        if np.any(~np.isfinite(g64[finite])):
            return float("inf")
        scale = np.max(np.abs(w64[finite]), initial=0.0) or 1.0
        worst = max(worst, float(np.max(np.abs(g64[finite] - w64[finite]), initial=0.0) / scale))
    return worst


def _emulated(model: onnx.ModelProto, storage: dict[str, str]) -> onnx.ModelProto:
    """The partition's ONNX model with each tensor in `storage` rounded to its 16-bit dtype (Cast there and back;
    weights rounded in place)."""
    out = onnx.ModelProto.FromString(model.SerializeToString())
    g = out.graph
    for init in g.initializer:
        if init.name in storage and init.data_type == onnx.TensorProto.FLOAT:
            data = numpy_helper.to_array(init)
            rounded = data.astype(np.float16 if storage[init.name] == "float16" else "bfloat16").astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(rounded, init.name))
    nodes = []
    for node in g.node:
        nodes.append(node)
        for i, name in enumerate(node.output):
            if name in storage:
                raw = f"{name}/fp32"
                node.output[i] = raw
                nodes.append(helper.make_node("Cast", [raw], [f"{name}/narrow"], to=CAST_TO[storage[name]]))
                nodes.append(helper.make_node("Cast", [f"{name}/narrow"], [name], to=onnx.TensorProto.FLOAT))
    del g.node[:]
    g.node.extend(nodes)
    return out


def emulate(model: onnx.ModelProto, storage: dict[str, str], sets: list[FeedSet]) -> Verdict:
    session = _session(_emulated(model, storage))
    names = [o.name for o in session.get_outputs()]
    worst = max(error(dict(zip(names, session.run(names, feeds), strict=True)), want) for feeds, want in sets)
    return Verdict(worst, "emulated with onnxruntime (16-bit storage rounding)")


def on_device(backend: Any, artifact: Artifact, part: Partition, sets: list[FeedSet]) -> Verdict:
    from ragc.bundle.single import single_partition

    with tempfile.TemporaryDirectory(prefix="ragc-precision-") as tmp:
        exe = backend.prepare(*single_partition(artifact, part.graph, Path(tmp), "gpu", part.id))
    try:
        worst = max(error(exe.run(feeds), want) for feeds, want in sets)
    finally:
        exe.close()
    return Verdict(worst, f"ran on {backend.device_name}")


def checked(
    name: str,
    emit: Callable[[Precision], Artifact],
    check: Callable[[Artifact, Precision], Verdict],
    features: frozenset[str],
) -> tuple[Precision, dict[str, Any]]:
    """The precision a GPU partition keeps, `name` (reduced) if its check passes, else fp32, and what its schedule
    entry records: precision, the check that ran, its error and tolerance, and a note on a fallback."""
    if name not in TOLERANCE:
        raise ValueError(f"precision {name!r} is not one of {', '.join(PRECISIONS)}")
    wanted = choose(name, features)
    verdict = check(emit(wanted), wanted)
    info = {
        "precision_requested": name,
        "precision_check": verdict.how,
        "precision_error": float(f"{min(verdict.error, 1e30):.3g}"),
        "precision_tolerance": TOLERANCE[name],
    }
    if verdict.error <= TOLERANCE[name]:
        return wanted, info | {"precision": name, "precision_detail": wanted.describe()}
    note = f"{name} failed its check (error {info['precision_error']:g} > {TOLERANCE[name]:g}); compiled in fp32"
    return Precision(), info | {"precision": "fp32", "precision_note": note}


def _vulkan_here(personality: Any) -> Any | None:
    """A Vulkan backend when the compile is for this chip and one opens, else None (the check is emulated)."""
    from ragc.personality.store import current_chip_id

    if personality.is_target or personality.chip_id != current_chip_id():
        return None
    try:
        from runtime_min.backends.vulkan import VulkanBackend
        from runtime_min.errors import BackendUnavailable
        from runtime_min.options import LoadOptions

        return VulkanBackend(LoadOptions())
    except (ImportError, BackendUnavailable):
        return None


@contextmanager
def gpu_emitter(c: Any) -> Iterator[Callable[[Partition, TensorStore], tuple[Artifact, dict[str, Any]]]]:
    """While inside: `emit(partition, store)` gives a GPU partition's artifact at `c.options.precision` if it passes
    its check (module docstring), else in fp32, and the fields its schedule entry records (precision and check)."""
    from codegen.cpu import partition_model

    name, features = c.options.precision, gpu_features(c.personality)
    gpu_parts = [p for p in c.partitions if p.device == "gpu"]
    sets = feed_sets(c.loaded.proto, c.loaded.graph, gpu_parts) if name != "fp32" and gpu_parts else {}
    backend = _vulkan_here(c.personality) if sets else None

    def emit(part: Partition, store: TensorStore) -> tuple[Artifact, dict[str, Any]]:
        def build(precision: Precision, into: TensorStore | None = None) -> Artifact:
            return codegen.emit("gpu", part.graph, part.id, into or TensorStore(), precision=precision)

        def check(artifact: Artifact, precision: Precision) -> Verdict:
            if backend is not None:
                return on_device(backend, artifact, part, sets[part.id])
            model = partition_model(c.loaded.proto, part.graph, part.id, None)
            return emulate(model, storage_plan(part.graph, precision), sets[part.id])

        if name == "fp32":
            return build(Precision(), store), {}
        precision, info = checked(name, build, check, features)
        return build(precision, store), info

    try:
        yield emit
    finally:
        if backend is not None:
            backend.close()
