"""Issue 21's closing measurement: an adaptive bundle (latency = GPU-first, no-gpu) against the fixed GPU-first plan,
with and without a competing GPU load, and how many runs the switch takes after the load starts and stops.

The load is a subprocess: a CUDA kernel loop through torch (matmuls, then a sleep, busy `--duty` of every 10 ms
period); with `--load vulkan`, a ragc GPU plan of a 1024x4096 matmul chain run by runtime_min on the same duty
cycle; or, with `--load cpu` (the default of --quick, for lavapipe, where the "GPU" is the CPU), numpy matmuls.
Also measures what the rule costs on the CPU: reading the latest signals and one pick.

    python bench/adaptive.py                       # the H200 machine: torch load, 200 runs a phase
    python bench/adaptive.py --quick               # a local smoke run on lavapipe (CPU load, 30 runs a phase)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
from adaptive_fixtures import matmul_chain  # noqa: E402

import runtime_min  # noqa: E402
from bench.interleave import interleaved_ms  # noqa: E402
from ragc.rule import compile_rule  # noqa: E402
from ragc.variants import compile_variants  # noqa: E402
from runtime_min.adaptive import LiveSignals, Rule  # noqa: E402
from runtime_min.adaptive.rule import Chooser  # noqa: E402

PERIOD_S = 0.010  # the load's duty-cycle period
LOAD = {
    "gpu": """
import sys, time, torch
duty, period = float(sys.argv[1]), float(sys.argv[2])
a = torch.randn(4096, 4096, device="cuda")
torch.cuda.synchronize()
while True:
    start = time.perf_counter()
    while time.perf_counter() - start < duty * period:
        a = torch.tanh(a @ a)
        torch.cuda.synchronize()
    time.sleep(max(0.0, period - (time.perf_counter() - start)))
""",
    "cpu": """
import sys, time, numpy as np
duty, period = float(sys.argv[1]), float(sys.argv[2])
a = np.random.default_rng(0).standard_normal((192, 192)).astype(np.float32)
while True:
    start = time.perf_counter()
    while time.perf_counter() - start < duty * period:
        a = np.tanh(a @ a)
    time.sleep(max(0.0, period - (time.perf_counter() - start)))
""",
    "vulkan": """
import sys, time, warnings, numpy as np, runtime_min
duty, period, bundle = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
warnings.simplefilter("ignore")
plan = runtime_min.load(bundle)
feeds = {s.name: np.ones(s.shape, s.dtype) for s in plan.inputs}
while True:
    start = time.perf_counter()
    while time.perf_counter() - start < duty * period:
        plan.run(feeds)
    time.sleep(max(0.0, period - (time.perf_counter() - start)))
""",
}
LOAD_MODEL = {"width": 4096, "rows": 1024, "layers": 4}  # the Vulkan load's plan: a few ms a run on a large GPU


class Load:
    """The competing process, started and stopped by the benchmark."""

    def __init__(self, kind: str, duty: float, bundle: Path | None = None) -> None:
        self.kind, self.duty, self.bundle, self.proc = kind, duty, bundle, None

    def start(self) -> None:
        code, extra = LOAD[self.kind], [str(self.bundle)] if self.kind == "vulkan" else []
        self.proc = subprocess.Popen([sys.executable, "-c", code, str(self.duty), str(PERIOD_S), *extra])
        time.sleep(0.3 if self.kind == "cpu" else 2.0)  # CUDA context or Vulkan plan up, kernels flowing
        if self.proc.poll() is not None:
            raise SystemExit(f"the {self.kind} load exited at once (rc {self.proc.returncode}): no load to measure")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()
            self.proc = None


def timed(plan, feeds, runs: int) -> tuple[list[float], list[str]]:
    """Wall ms of `runs` runs and the variant each ran ("latency probe" for a probe)."""
    times, variants = [], []
    for _ in range(runs):
        start = time.perf_counter()
        plan.run(feeds)
        times.append((time.perf_counter() - start) * 1e3)
        last = plan.last_variant() if hasattr(plan, "last_variant") else None
        variants.append(f"{last['variant']}{' probe' if last['probe'] else ''}" if last else "fixed")
    return times, variants


def runs_to(variants: list[str], pred) -> int | None:
    """The 1-based run at which `pred` first holds, or None."""
    return next((i + 1 for i, v in enumerate(variants) if pred(v)), None)


def rule_cost(repeats: int) -> dict[str, float]:
    """ns per latest-signals read and per rule pick, on this CPU."""
    source = LiveSignals()
    rule = Rule.from_json(
        compile_rule(["latency", "no-gpu", "gpu-busy"], ["cpu", "gpu"]), {"latency", "no-gpu", "gpu-busy"}
    )
    chooser, signals = Chooser(rule), source.latest()
    start = time.perf_counter_ns()
    for _ in range(repeats):
        source.latest()
    read_ns = (time.perf_counter_ns() - start) / repeats
    start = time.perf_counter_ns()
    for _ in range(repeats):
        chooser.pick(signals)
    pick_ns = (time.perf_counter_ns() - start) / repeats
    source.close()
    return {"signal_read_ns": round(read_ns, 1), "rule_pick_ns": round(pick_ns, 1), "signals": sorted(signals)}


def bundles(folder: Path, width: int, rows: int, layers: int, target: str | None) -> tuple[Path, Path]:
    """The adaptive bundle (latency forced GPU-first, no-gpu) and the fixed GPU-first plan, for this chip (or from
    the personality file `target`, which needs no profile of this one)."""
    from ragc.pipeline import compile_model

    model = matmul_chain(folder / "chain.onnx", width=width, rows=rows, layers=layers)
    options = {"devices": "cpu,gpu", "place": ("*=gpu",), "tune": False, "target": target}
    adaptive = compile_variants(model, folder / "adaptive", "latency,no-gpu", **options).bundle
    fixed = compile_model(model, folder / "fixed", **options).bundle
    return adaptive, fixed


def vulkan_load_plan(folder: Path, quick: bool, target: str | None) -> Path:
    """The Vulkan load's GPU plan: a matmul chain of a few ms a run on a large GPU (--quick: a small one)."""
    from ragc.pipeline import compile_model

    size = {"width": 512, "rows": 64, "layers": 2} if quick else LOAD_MODEL
    model = matmul_chain(folder / "load.onnx", **size)
    return compile_model(model, folder / "load", devices="gpu", tune=False, target=target).bundle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="local smoke run: small model, CPU load, 30 runs")
    parser.add_argument("--load", choices=sorted(LOAD), help="competing load [default: gpu; --quick: cpu]")
    parser.add_argument("--duty", type=float, default=0.7, help="share of each 10 ms the load is busy")
    parser.add_argument("--runs", type=int, help="runs a phase [default: 200; --quick: 30]")
    parser.add_argument("--width", type=int, help="matmul width [default: 512; --quick: 256]")
    parser.add_argument("--rows", type=int, default=64, help="matmul rows (the batch)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--json", dest="out", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--target", help="compile from this personality file instead of profiling this chip")
    args = parser.parse_args()
    runs = args.runs or (30 if args.quick else 200)
    width = args.width or (256 if args.quick else 512)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", runtime_min.RuntimeMinWarning)
        adaptive_path, fixed_path = bundles(Path(tmp), width, args.rows, args.layers, args.target)
        kind = args.load or ("cpu" if args.quick else "gpu")
        plan = vulkan_load_plan(Path(tmp), args.quick, args.target) if kind == "vulkan" else None
        load = Load(kind, args.duty, plan)
        feeds = {"x": np.random.default_rng(0).standard_normal((args.rows, width)).astype(np.float32)}
        adaptive, fixed = runtime_min.load(adaptive_path), runtime_min.load(fixed_path)
        devices = {name: plan.processors for name, plan in adaptive.plans.items()}
        pair = {"fixed": lambda: fixed.run(feeds), "adaptive": lambda: adaptive.run(feeds)}
        rounds = 10
        idle = interleaved_ms(pair, rounds, max(runs // rounds, 3))
        _, idle_variants = timed(adaptive, feeds, rounds)
        load.start()
        try:
            _, load_variants = timed(adaptive, feeds, runs)  # the runs after the load starts: when it switches
            loaded = interleaved_ms(pair, rounds, max(runs // rounds, 3))  # switched already: both under load
        finally:
            load.stop()
        _, after_variants = timed(adaptive, feeds, runs)
        last = adaptive.last_variant()
        adaptive.close(), fixed.close()
    result = {
        "load": load.kind,
        "duty": args.duty,
        "runs": runs,
        "model": f"matmul chain {args.rows}x{width}, {args.layers} layers",
        "variant_devices": devices,
        "idle_ms": idle,
        "load_ms": loaded,
        "timing": f"medians over {rounds} interleaved rounds of the two plans (bench/interleave.py)",
        "idle_variants": sorted(set(idle_variants)),
        "runs_to_switch_after_load_start": runs_to(load_variants, lambda v: not v.startswith("latency")),
        "runs_to_switch_after_load_stop": runs_to(after_variants, lambda v: v == "latency"),
        "probe_share_under_load": round(load_variants.count("latency probe") / runs, 3),
        "last_choice": last,
        "rule_cost": rule_cost(20_000 if args.quick else 200_000),
    }
    result["ratio_load"] = round(result["load_ms"]["adaptive"] / result["load_ms"]["fixed"], 3)
    result["ratio_idle"] = round(result["idle_ms"]["adaptive"] / result["idle_ms"]["fixed"], 3)
    text = json.dumps(result, indent=1, sort_keys=True, default=str)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
