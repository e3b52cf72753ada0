"""Plans for the executor tests: random elementwise DAGs compiled by the real compiler into one CPU partition per
op, then spread over the GPU and NPU workers, which are disabled at load, so each runs its partitions from their
CPU fallbacks on a worker thread of its own."""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from models import conv_bn_relu_model, save
from onnx import TensorProto, helper

import runtime_min
from ragc.pipeline import compile_model
from runtime_min.errors import RuntimeMinWarning
from runtime_min.format import ARTIFACT_FORMATS as FORMATS

TARGET = "ryzen-ai-9-hx-370"  # a target file: compiling needs no profiling of this machine
SHAPE = (2, 3)
UNARY = ("Relu", "Sigmoid", "Tanh", "Neg", "Abs")
BINARY = ("Add", "Mul", "Sub", "Max")

# one op: (op type, indices of its inputs among the tensors before it: 0 = x, 1 = y, 2 + k = op k's output)
OpSpec = tuple[str, tuple[int, ...]]


def dag_model(ops: list[OpSpec]) -> bytes:
    """A float32 model of elementwise ops; every tensor nobody reads is an output."""
    names = ["x", "y"] + [f"t{k}" for k in range(len(ops))]
    read = {i for _, args in ops for i in args}
    nodes = [
        helper.make_node(op, [names[i] for i in args], [names[k + 2]], name=f"n{k}") for k, (op, args) in enumerate(ops)
    ]
    value = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(SHAPE)) for n in names]
    outputs = [value[k + 2] for k in range(len(ops)) if k + 2 not in read]
    graph = helper.make_graph(nodes, "dag", value[:2], outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def chain_ops(n: int) -> list[OpSpec]:
    """relu(x), then n - 2 unary ops one after another, then + y."""
    middle: list[OpSpec] = [(UNARY[k % len(UNARY)], (k + 1,)) for k in range(1, n - 1)]
    return [("Relu", (0,)), *middle, ("Add", (n, 1))]


def compile_split(ops: list[OpSpec], folder: Path) -> Path:
    """The real compiler, every op forced onto the CPU and cut into a partition of its own (p0, p1, ...)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "m.onnx").write_bytes(dag_model(ops))
    names = [f"n{k}" for k in range(len(ops))]
    result = compile_model(folder / "m.onnx", folder / "plan", devices="cpu", target=TARGET, cut_before=names[1:])
    return result.bundle


def three_processor_plan(folder: Path) -> Path:
    """conv -> bn -> relu -> conv -> add on the GPU, pooling and flatten on the CPU, the final Gemm on the NPU."""
    folder.mkdir(parents=True, exist_ok=True)
    model = save(conv_bn_relu_model(), folder / "m.onnx")
    place = ["Conv=gpu", "gap=cpu", "flatten=cpu", "fc=npu"]
    return compile_model(model, folder / "plan", devices="cpu,gpu,npu", target=TARGET, place=place).bundle


def spread(bundle: Path, out: Path, processor_of: dict[str, str], order: list[str] | None = None) -> Path:
    """A copy of `bundle` whose partitions run on the given processors (each step list follows `order`, by default
    schedule order); partitions off the CPU get their own artifact as CPU fallback, and a native artifact entry their
    (disabled) processor never reads. Hashes are redone."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(bundle, out)
    schedule = json.loads((out / "schedule.json").read_text())
    parts = {p["id"]: p for p in schedule["partitions"]}
    writer = {o["name"]: p["id"] for p in schedule["partitions"] for o in p["outputs"]}
    steps: dict[str, list[dict[str, Any]]] = {}
    for pid in order or list(parts):
        part, device = parts[pid], processor_of.get(pid, "cpu")
        part["device"] = device
        if device != "cpu":
            part.setdefault("fallback", dict(part["artifact"]))
            onnx_file = part["fallback"]["model"]
            part["artifact"] = {"format": FORMATS[device], "files": [onnx_file], "program": onnx_file}
        sources = {writer[s["name"]] for s in part["inputs"] if s["name"] in writer}
        waits = sorted(s for s in sources if processor_of.get(s, "cpu") != device)
        steps.setdefault(device, []).append({"partition": pid, "waits": waits})
    schedule["steps"] = steps
    schedule["processors"] = sorted(steps)
    rewrite(out, schedule)
    return out


def rewrite(bundle: Path, schedule: dict[str, Any]) -> None:
    """Write a changed schedule.json and its new hash into the manifest."""
    data = (json.dumps(schedule, sort_keys=True, indent=1) + "\n").encode()
    (bundle / "schedule.json").write_bytes(data)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["schedule.json"] = hashlib.sha256(data).hexdigest()
    manifest["processors"] = schedule["processors"]
    (bundle / "manifest.json").write_text(json.dumps(manifest, sort_keys=True, indent=1) + "\n")


def load_quiet(bundle: Path, **options: Any) -> runtime_min.Plan:
    """Load a plan with the GPU and NPU disabled (their partitions fall back to the CPU), without the warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeMinWarning)
        return runtime_min.load(bundle, **{"disable": ("gpu", "npu"), **options})


def feeds(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(SHAPE).astype(np.float32) for n in ("x", "y")}


def same_bits(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return sorted(a) == sorted(b) and all(a[k].tobytes() == b[k].tobytes() for k in a)
