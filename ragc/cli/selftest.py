"""`ragc selftest`: a way for real hardware to report back. On whatever machine it runs, it checks every processor
present against onnxruntime on a quick set of op models (the NPU through pyxrt when an NPU and XRT are there,
otherwise through the simulator, labelled so), runs a quick profile, times a fixed model set against its
predictions (on the NPU: the XDNA model's time of each kernel against the measured one), and writes one JSON
report without personal data (no host or user names, no paths under the home folder). `--compare FILE` reads a
report and shows where the target file's figures were wrong."""

from __future__ import annotations

import json
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ragc.cli.output import console as new_console

REPORT_SCHEMA = 1
TARGET_FOR_CONFORMANCE = "ryzen-ai-9-hx-370"  # cross-compiled plans run anywhere; its NPU section names npu2


def _suite() -> dict[str, Any]:
    """The quick conformance set: one small ONNX model per kernel family."""
    from ragc.profiler import workloads
    from ragc.profiler.modelgen import small_cnn, transformer

    return {
        "cnn (conv, depthwise, ReLU6, pooling, Gemm)": lambda: small_cnn(32, [8, 16], depthwise=True),
        "transformer block (MatMul, LayerNorm, Softmax)": lambda: transformer(seq=8, dim=32, heads=2, blocks=1),
        "llama block (RMSNorm, RoPE, GQA Attention, SwiGLU)": lambda: workloads.llama(
            8, 1, {"dim": 32, "heads": 4, "kv_heads": 2, "hidden": 64, "layers": 1, "vocab": 10}
        ),
        "int8 GEMM (QLinearMatMul)": lambda: workloads.gemm(64, "int8"),
    }


def npu_backend_here() -> str:
    """ "xrt" when pyxrt opens an NPU here, else "sim"."""
    from runtime_min.backends.npu_xrt import NpuXrtBackend
    from runtime_min.errors import BackendUnavailable
    from runtime_min.options import LoadOptions

    try:
        NpuXrtBackend.open(LoadOptions.make({})).close()
    except BackendUnavailable:
        return "sim"
    return "xrt"


def processors_here() -> dict[str, str]:
    """Processor -> how it runs here: cpu always, gpu when Vulkan lists a device, npu on pyxrt or the simulator."""
    from ragc.personality.chip import vulkan_facts

    found = {"cpu": "onnxruntime"}
    if vulkan_facts():
        found["gpu"] = "vulkan"
    found["npu"] = npu_backend_here()
    return found


def _feeds(plan) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        s.name: rng.integers(-64, 64, s.shape).astype(s.dtype)
        if np.dtype(s.dtype).kind == "i"
        else rng.standard_normal(s.shape).astype(s.dtype)
        for s in plan.inputs
    }


def conformance(folder: Path, found: dict[str, str], bar: Progress, deadline: float) -> list[dict[str, Any]]:
    """Each suite model compiled processor-first for each processor here, run, and compared with onnxruntime."""
    import onnx
    import onnxruntime

    import runtime_min
    from ragc.pipeline import compile_model

    results = []
    suite = _suite()
    task = bar.add_task("conformance", total=len(suite) * len(found))
    for name, build in suite.items():
        path = folder / f"{len(results)}.onnx"
        onnx.save(build(), str(path))
        for device, how in found.items():
            entry = {"suite": name, "processor": device, "backend": how, "simulated": how == "sim"}
            if time.monotonic() > deadline:
                results.append({**entry, "status": "skipped (time budget)"})
                bar.advance(task)
                continue
            try:
                plan_dir = folder / f"plan-{len(results)}"
                compile_model(path, plan_dir, target=TARGET_FOR_CONFORMANCE, devices=device)
                with warnings.catch_warnings():  # a fallback is reported below, as this row's result
                    warnings.simplefilter("ignore", runtime_min.RuntimeMinWarning)
                    plan = runtime_min.load(plan_dir, npu="sim" if how == "sim" else "xrt")
                if device in plan.fallbacks:
                    raise RuntimeError(f"{device} fell back to the CPU: {plan.fallbacks[device][:160]}")
                feeds = _feeds(plan)
                got = plan.run(feeds)[plan.outputs[0].name]
                want = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
                diff = float(np.abs(got.astype(np.float64) - want).max())
                if np.dtype(want.dtype).kind == "i":  # integer outputs: one step of the last bit, absolute
                    error, limit = diff, 1.0
                else:
                    error, limit = diff / (float(np.abs(want).max()) or 1.0), 5e-2 if device == "npu" else 1e-3
                entry.update(status="pass" if error <= limit else "fail", error=round(error, 6), limit=limit)
            except Exception as exc:  # a failing processor is a result to report, not a reason to stop
                entry.update(status="error", error_message=f"{type(exc).__name__}: {str(exc)[:200]}")
            results.append(entry)
            bar.advance(task)
    return results


def predictions(folder: Path, bar: Progress, repeat: int = 10) -> list[dict[str, Any]]:
    """Predicted against measured latency of a fixed model set compiled for this chip (needs its personality)."""
    import onnx

    import runtime_min
    from ragc.pipeline import compile_model
    from ragc.profiler import power
    from ragc.profiler.modelgen import small_cnn, transformer

    fixed = {
        "cnn_64_dw": small_cnn(64, [16, 32, 64], depthwise=True),
        "cnn_64": small_cnn(64, [16, 32, 64], depthwise=False),
        "transformer_s32": transformer(seq=32, dim=64, heads=4, blocks=2),
    }
    rows = []
    task = bar.add_task("predicted vs measured", total=len(fixed))
    for name, model in fixed.items():
        path = folder / f"{name}.onnx"
        onnx.save(model, str(path))
        result = compile_model(path, folder / f"pred-{name}")
        plan = runtime_min.load(folder / f"pred-{name}", npu="sim")
        feeds = _feeds(plan)
        plan.run(feeds)
        meters = [c for c in power.counters() if c.readable]
        before, started = [power.read(c) for c in meters], time.perf_counter()
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            plan.run(feeds)
            times.append((time.perf_counter() - start) * 1e3)
        after, seconds = [power.read(c) for c in meters], time.perf_counter() - started
        energy = {
            c.name: round(power.energy_mj(b, a, c, seconds) / repeat, 4)
            for c, b, a in zip(meters, before, after, strict=True)
            if b is not None and a is not None and a >= b
        }
        manifest = json.loads((folder / f"pred-{name}" / "manifest.json").read_text())
        rows.append(
            {
                "model": name,
                "predicted_ms": round(result.predicted_ms, 4),
                "measured_ms": round(statistics.median(times), 4),
                "predicted_mj": manifest.get("energy_mj"),
                "measured_mj": energy,
                "processors": sorted({p.device for p in result.partitions}),
            }
        )
        bar.advance(task)
    return rows


NPU_KERNELS = (512, 1024, 2048)  # square bf16 GEMMs timed on a real NPU


def npu_measured(folder: Path, target: str, bar: Progress, repeat: int = 10) -> list[dict[str, Any]]:
    """On a real NPU: each GEMM compiled NPU-only for `target`, run through pyxrt; the measured wall of the NPU
    partition (host layout included) against the XDNA model's prediction of it."""
    import onnx

    import runtime_min
    from ragc.pipeline import compile_model
    from ragc.profiler import workloads

    rows = []
    task = bar.add_task("NPU kernels, measured", total=len(NPU_KERNELS))
    for size in NPU_KERNELS:
        path = folder / f"npu-gemm-{size}.onnx"
        onnx.save(workloads.gemm(size, "bf16"), str(path))
        result = compile_model(path, folder / f"npu-plan-{size}", target=target, devices="npu")
        with warnings.catch_warnings():  # a missing NPU or xclbin is recorded in the row, not warned about
            warnings.simplefilter("ignore", runtime_min.RuntimeMinWarning)
            plan = runtime_min.load(folder / f"npu-plan-{size}", npu="xrt")
        npu = next(p for p in result.partitions if p.device == "npu")
        predicted = next(u for u in result.problem.units if u.ops[0] == npu.ops[0]).cost_ms["npu"]
        row = {"kernel": f"gemm bf16 {size}^3", "predicted_ms": round(predicted, 4), "measured_ms": None}
        if "npu" in plan.fallbacks:  # e.g. the xclbins are not built yet: say so instead of timing the CPU
            rows.append({**row, "note": plan.fallbacks["npu"][:200]})
            bar.advance(task)
            continue
        feeds = _feeds(plan)
        plan.run(feeds)
        times = []
        for _ in range(repeat):
            plan.run(feeds)
            times += [s["duration_ms"] for s in plan.last_step_times() if s["device"] == "npu"]
        rows.append({**row, "measured_ms": round(statistics.median(times), 4)})
        bar.advance(task)
    return rows


def machine() -> dict[str, Any]:
    """Hardware and driver facts, nothing personal."""
    from ragc.personality.chip import chip_facts
    from ragc.profiler.npu_stack import npu_stack
    from ragc.profiler.power import counters

    facts = chip_facts()
    return {
        "cpu": facts["cpu"],
        "gpus": [
            {k: g[k] for k in ("name", "vendor_id", "device_id", "driver_version", "unified")} for g in facts["gpus"]
        ],
        "os": {"system": platform.system(), "kernel": platform.release(), "python": platform.python_version()},
        "npu_stack": [{"part": f.part, "found": f.found, "detail": f.detail} for f in npu_stack()],
        "power_counters": [
            {"name": c.name, "kind": c.kind, "readable": c.readable, "detail": c.detail} for c in counters()
        ],
    }


def _bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    )


@click.command("selftest")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), help="Write the JSON report here.")
@click.option("--budget", default=300.0, show_default=True, help="Seconds the conformance suites may take.")
@click.option("--skip-profile", is_flag=True, help="Skip the quick profile and the predicted-vs-measured models.")
@click.option(
    "--compare",
    "compare",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read a report (from any machine) and show where the target file's figures were wrong.",
)
@click.option("--target", help="With --compare: the target file to hold the report against [default: guessed].")
def selftest(report: Path | None, budget: float, skip_profile: bool, compare: Path | None, target: str | None) -> None:
    """Check this machine's processors, profile it and time a fixed model set; write a shareable JSON report.

    \b
    Examples:
      ragc selftest --report selftest.json
      ragc selftest --skip-profile --budget 60
      ragc selftest --compare selftest.json --target ryzen-ai-9-hx-370
    """
    from ragc import __version__

    console = new_console()
    if compare is not None:
        from ragc.cli.selftest_compare import print_comparison

        print_comparison(json.loads(compare.read_text()), target, console)
        return
    found = processors_here()
    result: dict[str, Any] = {
        "schema": REPORT_SCHEMA,
        "ragc_version": __version__,
        "machine": machine(),
        "processors": found,
    }
    with tempfile.TemporaryDirectory() as tmp, _bar(console) as bar:
        folder = Path(tmp)
        result["conformance"] = conformance(folder, found, bar, time.monotonic() + budget)
        if not skip_profile:
            from ragc.personality.store import save_personality
            from ragc.profiler.profile import profile_chip

            personality = profile_chip(quick=True, console=console)
            save_personality(personality)
            result["profile"] = {
                d: {
                    k: personality.device(d).get(k)
                    for k in ("name", "peak_gflops", "peak_gbps", "dispatch_ms", "op_overhead_ms")
                }
                for d in personality.devices
            }
            result["profile"]["transfers"] = personality.data.get("transfers", {})
            result["predictions"] = predictions(folder, bar)
        if found["npu"] == "xrt":
            from ragc.cli.selftest_compare import guess_target

            result["npu_measured"] = npu_measured(folder, guess_target(result) or TARGET_FOR_CONFORMANCE, bar)
    failed = [r for r in result["conformance"] if r["status"] in ("fail", "error")]
    table = Table("suite", "processor", "backend", "status", "max error / scale", title="selftest conformance")
    for r in result["conformance"]:
        table.add_row(
            r["suite"],
            r["processor"],
            r["backend"] + (" (simulated)" if r["simulated"] else ""),
            r["status"],
            str(r.get("error", r.get("error_message", ""))),
        )
    console.print(table)
    if report is not None:
        report.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        console.print(f"report written to {report} (share it: it holds hardware and driver facts only)")
    if failed:
        raise SystemExit(1)


command = selftest
