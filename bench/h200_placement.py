"""Issue 16's table on the chip that is present: a fresh quick profile, then for each real exported model the default
plan (candidates timed on the chip, the measured best kept), the model-alone plan (--no-tune: what a cross-compile
would get), CPU only and GPU-first, all timed interleaved in one process. Prints a markdown table; writes
placement.json and the personality. Run on the lent H200:

    bash -c '. bench/device_env.sh && python3 bench/h200_placement.py --out $OUT --budget 480'

On this 2-core box (CPU + lavapipe), light-zoo and generated models by name, e.g.:

    python bench/h200_placement.py --models squeezenet,shufflenet,cnn_plain_96 --out /tmp/placement-local
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import onnx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.interleave import interleaved_ms  # noqa: E402
from bench.models import input_specs  # noqa: E402
from bench.real_models import TEXT, VISION, export  # noqa: E402
from ragc.cli.report import random_feeds  # noqa: E402

PLANS = {"default": {}, "no_tune": {"tune": False}, "cpu_only": {"devices": "cpu"}, "gpu_first": {"devices": "gpu"}}


def source(name: str, folder: Path) -> SimpleNamespace:
    """The model `name` as (path, feeds): a light-zoo model or one of ragc's generated ones (no torch needed, for
    this 2-core box), else a real export made here (bench/real_models.py)."""
    from ragc.profiler.zoo import generated_models, light_zoo_paths

    light, generated = light_zoo_paths(), generated_models()
    if name not in light and name not in generated:
        return export(name, folder)
    path = light.get(name) or folder / f"{name}.onnx"
    if name in generated:
        onnx.save(generated[name], path)
    return SimpleNamespace(path=path, feeds=random_feeds(input_specs(path)))


def measure(name: str, folder: Path, tune_budget: float) -> dict:
    import runtime_min
    from ragc.pipeline import compile_model

    model = source(name, folder)
    row: dict = {"model": name, "compile_s": {}}
    plans, manifests, keys = {}, {}, {}
    for kind, options in PLANS.items():
        start = time.perf_counter()
        bundle = compile_model(model.path, folder / f"{name}-{kind}", tune_budget_s=tune_budget, **options).bundle
        row["compile_s"][kind] = round(time.perf_counter() - start, 1)
        manifests[kind] = json.loads((bundle / "manifest.json").read_text())
        keys[kind] = plan_key(bundle, manifests[kind])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plans[kind] = runtime_min.load(bundle)
    distinct = {k: p for k, p in plans.items() if k == next(j for j in plans if keys[j] == keys[k])}
    times = interleaved_ms({k: (lambda p=p: p.run(model.feeds)) for k, p in distinct.items()}, rounds=5, runs=10)
    times |= {k: times[next(j for j in distinct if keys[j] == keys[k])] for k in plans}  # one plan, one time
    for kind, plan in plans.items():
        devices = sorted({s.device for s in plan.steps})
        row[kind] = {
            "measured_ms": round(times[kind], 3),
            "predicted_ms": manifests[kind]["predicted_ms"],
            "partitions": len(plan.steps),
            "devices": devices,
            "chosen": manifests[kind].get("chosen"),
            "same_plan_as": next((j for j in plans if keys[j] == keys[kind] and j != kind), None),
        }
        plan.close()
    row["candidates"] = manifests["default"].get("candidates", [])
    best_single = min(row["cpu_only"]["measured_ms"], row["gpu_first"]["measured_ms"])
    row["default_vs_best_single"] = round(row["default"]["measured_ms"] / best_single, 3)
    row["no_tune_prediction_error_pct"] = round(
        100 * (row["no_tune"]["predicted_ms"] / row["no_tune"]["measured_ms"] - 1), 1
    )
    return row


def plan_key(bundle: Path, manifest: dict) -> str:
    """What a plan runs: its schedule and every artifact's hash (not the compiler's notes). Two plans with one key
    are the same plan: timed once, since timing the same plan twice on a busy 2-core box differed by up to 30%."""
    import hashlib

    notes = ("manifest.json", "costs.json", "opstats.json", "timeline.svg")
    runs = {k: v for k, v in manifest["files"].items() if k not in notes}
    return hashlib.sha256(json.dumps(runs, sort_keys=True).encode()).hexdigest()


def _process_health() -> dict:
    """What this process holds after a model (open files, threads) and whether Vulkan still sees its GPU: a
    session once lost the GPU mid-run, and these say whether a leak is why."""
    import os

    from ragc.personality.chip import vulkan_facts

    count = {k: len(os.listdir(f"/proc/self/{k}")) for k in ("fd", "task") if Path(f"/proc/self/{k}").is_dir()}
    return count | {"vulkan_gpus": len(vulkan_facts())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--models", default=",".join(VISION + TEXT))
    parser.add_argument("--work", type=Path, default=Path("/tmp/ragc-real"))
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for the whole script, profile included")
    parser.add_argument("--tune-budget", type=float, default=10.0)
    args = parser.parse_args()
    deadline = time.monotonic() + args.budget
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    import ragc
    from ragc.personality.store import current_chip_id, store_path

    start = time.perf_counter()
    ragc.profile(quick=True)
    profile_s = round(time.perf_counter() - start, 1)
    shutil.copy(store_path(current_chip_id()), args.out / "personality.json")
    rows: list[dict] = [{"profile_s": profile_s}]
    for name in args.models.split(","):
        if time.monotonic() > deadline:
            rows.append({"model": name, "error": "skipped: the script's time budget ran out"})
            continue
        try:
            rows.append(measure(name, args.work, args.tune_budget))
        except Exception as exc:  # one model failing must not cost the others
            rows.append({"model": name, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"})
        rows[-1]["after"] = _process_health()
        print(json.dumps(rows[-1]), flush=True)
        (args.out / "placement.json").write_text(json.dumps(rows, indent=1))
        shutil.copy(store_path(current_chip_id()), args.out / "personality.json")  # with the tuning timings
    print(f"quick profile: {profile_s} s")
    print("| model | default ms (pred) | no-tune ms (pred) | CPU only ms | GPU-first ms | default / best single |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows[1:]:
        if "error" in r:
            print(f"| {r['model']} | {r['error']} |")
            continue
        d, n = r["default"], r["no_tune"]
        cells = [
            f"{d['measured_ms']} ({d['predicted_ms']:.2f})",
            f"{n['measured_ms']} ({n['predicted_ms']:.2f})",
            r["cpu_only"]["measured_ms"],
            r["gpu_first"]["measured_ms"],
            r["default_vs_best_single"],
        ]
        print(f"| {r['model']} | " + " | ".join(map(str, cells)) + " |")


if __name__ == "__main__":
    main()
