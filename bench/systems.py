"""The systems under test: ragc three ways and the peers (ONNX Runtime CPU, IREE llvm-cpu and vulkan-spirv).

Each system prepares a model once (compile, load) and returns a callable that runs one set of feeds.
"""

from __future__ import annotations

import collections
import importlib.metadata
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

Feeds = dict[str, np.ndarray]
IREE_IMPORT = [sys.executable, "-m", "iree.compiler.tools.import_onnx", "--opset-version", "17"]  # old opsets too


@dataclass
class Prepared:
    run: Callable[[Feeds], Feeds]
    close: Callable[[], None]
    info: dict[str, Any] = field(default_factory=dict)  # compile time, predicted latency, partitions...
    plan: Any = None  # the runtime_min Plan, for ragc systems


@dataclass(frozen=True)
class System:
    name: str
    kind: str  # "ragc" or "peer"
    prepare: Callable[[Path, Path, list[str]], Prepared]  # (model, work dir, output names) -> Prepared
    unavailable: Callable[[], str | None] = lambda: None  # why it cannot run here, or None


def _ragc(devices: str) -> Callable[[Path, Path, list[str]], Prepared]:
    def prepare(model: Path, workdir: Path, output_names: list[str]) -> Prepared:
        import runtime_min
        from ragc.cli.report import plan_summary
        from ragc.pipeline import compile_model

        start = time.perf_counter()
        result = compile_model(model, workdir / f"plan-{devices.replace(',', '-')}", devices=devices)
        compile_s = time.perf_counter() - start
        summary = plan_summary(result.bundle)
        start = time.perf_counter()
        plan = runtime_min.load(result.bundle)
        load_s = time.perf_counter() - start
        op_types = {op.name: op.op_type for p in result.partitions for op in p.graph.ops}
        info = {
            "compile_s": compile_s,
            "compile_stages": dict(result.seconds),
            "load_s": load_s,
            "predicted_ms": result.predicted_ms if result.predicted_ms is not None else summary["predicted_ms"],
            "solver": result.solver,
            "gap": result.gap,
            "partitions": [
                {
                    "id": p["id"],
                    "device": p["device"],
                    "ops": len(p["ops"]),
                    "op_types": dict(sorted(collections.Counter(op_types.get(o, "?") for o in p["ops"]).items())),
                    "predicted_ms": p["predicted_ms"],
                }
                for p in summary["partitions"]
            ],
            "transfers": len(summary["transfers"]),
            "fallbacks": dict(sorted(plan.fallbacks.items())),
        }
        return Prepared(plan.run, plan.close, info, plan)

    return prepare


def _ort_cpu(model: Path, workdir: Path, output_names: list[str]) -> Prepared:
    """ONNX Runtime with default session options on the CPU execution provider."""
    import onnxruntime

    start = time.perf_counter()
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    info = {"compile_s": time.perf_counter() - start, "version": onnxruntime.__version__}
    return Prepared(lambda feeds: dict(zip(output_names, session.run(output_names, feeds), strict=True)), _noop, info)


def _noop() -> None:
    return None


def _iree_unavailable() -> str | None:
    try:
        import iree.compiler  # noqa: F401
        import iree.runtime  # noqa: F401
    except Exception as exc:  # missing or broken wheels: skip IREE with the reason
        return (
            f"iree.compiler / iree.runtime not importable ({type(exc).__name__}); "
            "pip install iree-base-compiler iree-base-runtime to compare with IREE"
        )
    return None


def _iree(target: str, driver: str, flags: list[str], env_var: str) -> Callable[[Path, Path, list[str]], Prepared]:
    """IREE compiled for `target` and run by `driver`; `env_var` adds iree-compile flags (space-separated)."""

    def prepare(model: Path, workdir: Path, output_names: list[str]) -> Prepared:
        import iree.compiler
        import iree.runtime

        start = time.perf_counter()
        mlir = workdir / f"{model.stem}.mlir"
        _check_call("iree-import-onnx", [*IREE_IMPORT, str(model), "-o", str(mlir)])
        vmfb = iree.compiler.compile_file(
            str(mlir), target_backends=[target], extra_args=[*flags, *os.environ.get(env_var, "").split()]
        )
        compile_s = time.perf_counter() - start
        context = iree.runtime.SystemContext(config=iree.runtime.Config(driver))
        module = iree.runtime.VmModule.copy_buffer(context.instance, vmfb)
        context.add_vm_module(module)
        entry = next(n for n in module.function_names if n != "__init" and not n.endswith("$async"))
        function = context.modules[module.name][entry]
        input_names = _onnx_input_names(model)

        def run(feeds: Feeds) -> Feeds:
            result = function(*(feeds[n] for n in input_names))
            results = result if isinstance(result, tuple | list) else (result,)
            return {n: _to_host(r) for n, r in zip(output_names, results, strict=True)}

        info = {
            "compile_s": compile_s,
            "version": package_version("iree-base-compiler"),
            "target": target,
            "driver": driver,
        }
        return Prepared(run, _noop, info)

    return prepare


def _to_host(array: Any) -> np.ndarray:
    """An IREE DeviceArray as a numpy copy. DeviceArray.to_host imports numpy memory into Vulkan, which needs
    page-aligned pointers numpy does not promise; then copy through a mapped staging buffer instead."""
    try:
        return np.array(array.to_host())
    except ValueError:
        from iree.runtime import BufferUsage, HalFence, MemoryType

        source, device = array._buffer_view.get_buffer(), array._device  # no public staging copy exists
        staging = device.allocator.allocate_buffer(
            memory_type=int(MemoryType.HOST_LOCAL | MemoryType.DEVICE_VISIBLE),
            allowed_usage=int(BufferUsage.TRANSFER_TARGET | BufferUsage.MAPPING_SCOPED),
            allocation_size=source.byte_length(),
        )
        semaphore = device.create_semaphore(0)
        device.queue_copy(
            source,
            staging,
            wait_semaphores=HalFence.create_at(semaphore, 0),
            signal_semaphores=HalFence.create_at(semaphore, 1),
        )
        HalFence.create_at(semaphore, 1).wait()
        return np.array(staging.map().asarray(array._buffer_view.shape, array.dtype))


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _onnx_input_names(model: Path) -> list[str]:
    from bench.models import input_specs

    return [s.name for s in input_specs(model)]


def _check_call(label: str, argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{label} failed: {last[:300]}")


SYSTEMS: dict[str, System] = {
    s.name: s
    for s in (
        System("ort-cpu", "peer", _ort_cpu),
        System("ragc-auto", "ragc", _ragc("cpu,gpu")),
        System("ragc-cpu", "ragc", _ragc("cpu")),
        System("ragc-gpu", "ragc", _ragc("gpu")),
        System(
            "iree-llvm-cpu",
            "peer",
            _iree("llvm-cpu", "local-task", ["--iree-llvmcpu-target-cpu=host"], "BENCH_IREE_CPU_FLAGS"),
            _iree_unavailable,
        ),
        System(
            "iree-vulkan", "peer", _iree("vulkan-spirv", "vulkan", [], "BENCH_IREE_VULKAN_FLAGS"), _iree_unavailable
        ),
    )
}


def select(names: str | None) -> list[System]:
    """Systems named in a comma list, always with ort-cpu first (it is the reference for correctness)."""
    if not names:
        return list(SYSTEMS.values())
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in SYSTEMS]
    if unknown:
        raise ValueError(f"unknown --systems {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}")
    return [SYSTEMS["ort-cpu"], *(SYSTEMS[n] for n in wanted if n != "ort-cpu")]
