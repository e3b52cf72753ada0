"""The done-when plans: BERT-base (s128), a Llama-3.2-1B-shaped decoder at s128, resnet50 and MobileNetV2,
cross-compiled for the HX 370 and the 7840U for latency, throughput and energy: which processors each plan uses,
its predicted time and energy against each processor alone, and which target constants, moved to either end of
their stated uncertainty (the target file's `uncertainty` section), change the choice. Everything is simulated
from the target files; nothing runs on a Ryzen AI chip.

    python -m bench.npu.plans [--models bert,llama,resnet50,mobilenet_v2] [--write-doc]
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import onnx

from bench.npu.common import ROOT, progress, write_region
from ragc.costmodel.energy import plan_energy, power_figures
from ragc.pipeline import Compilation, CompileOptions, _baseline_plans, frontend, personality, placement
from ragc.profiler import workloads as models
from ragc.targets import figure, load_target

TARGETS = ("ryzen-ai-9-hx-370", "ryzen-7-7840u")
OBJECTIVES = ("latency", "throughput", "energy")
ENERGY_CAP = 1.5  # the energy objective's latency cap, as a multiple of the latency plan's predicted time
MOVED = 0.10  # a change of choice: another set of processors, or more than this share of the ops moving
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def workloads(folder: Path) -> dict[str, Path]:
    return {
        "bert": lambda: models.save(models.bert_base(128), folder / "bert_base_s128.onnx"),
        "llama": lambda: models.save(models.llama(128, 16), folder / "llama_s128.onnx"),
        "resnet50": lambda: LIGHT / "light_resnet50.onnx",
        "mobilenet_v2": lambda: models.save(models.mobilenet_v2(), folder / "mobilenet_v2.onnx"),
    }


def _place(loaded: Compilation, target: Any, objective: str, cap: float | None, limit: float) -> Compilation:
    """Personality and placement stages on an already loaded model."""
    c = Compilation(
        loaded.model,
        loaded.out_dir,
        CompileOptions(target=target, objective=objective, max_latency_ms=cap, time_limit_s=limit),
    )
    c.loaded = loaded.loaded
    personality(c)
    placement(c)
    return c


def _ops_per_device(c: Compilation) -> dict[str, int]:
    return dict(Counter(c.placement.assignment[u.name] for u in c.problem.units for _ in u.ops))


def _device_of_ops(c: Compilation) -> dict[str, str]:
    return {op: c.placement.assignment[u.name] for u in c.problem.units for op in u.ops}


def _summary(c: Compilation) -> dict[str, Any]:
    power = power_figures(c.personality.data, c.problem.devices)
    baselines = _baseline_plans(c.problem)
    return {
        "ops": _ops_per_device(c),
        "predicted_ms": round(c.placement.predicted_ms, 3),
        "energy_mj": round(plan_energy(c.problem, c.placement, power).total_mj, 3),
        "alone": {
            d: [round(p.predicted_ms, 3), round(plan_energy(c.problem, p, power).total_mj, 3)]
            for d, p in baselines.items()
        },
    }


def _changed(base: Compilation, other: Compilation) -> bool:
    mine, theirs = _device_of_ops(base), _device_of_ops(other)
    moved = sum(mine[op] != theirs[op] for op in mine) / max(len(mine), 1)
    return set(mine.values()) != set(theirs.values()) or moved > MOVED


def _sensitivity(
    loaded: Compilation, base: Compilation, target: str, objective: str, cap: float | None, folder: Path
) -> list[str]:
    """The constants that change the choice at either end of their stated range ("npu.ddr_gbps low")."""
    data = load_target(target)
    flips = []
    for path, bounds in sorted(data["uncertainty"].items()):
        for end, value in zip(("low", "high"), bounds, strict=True):
            if value == figure(data, path):
                continue
            moved = copy.deepcopy(data)
            node = moved
            *parents, leaf = path.split(".")
            for part in parents:
                node = node[part]
            node[leaf] = value
            variant = folder / f"{target}-{path}-{end}.json"
            variant.write_text(json.dumps(moved))
            if _changed(base, _place(loaded, variant, objective, cap, 2.0)):
                flips.append(f"{path} {end} ({value:g})")
    return flips


def run(names: list[str], folder: Path) -> list[dict[str, Any]]:
    rows = []
    build = workloads(folder)
    with progress() as bar:
        task = bar.add_task("plans (placement, then each constant at both ends)", total=len(names) * len(TARGETS) * 3)
        for name in names:
            loaded = Compilation(build[name](), folder / "unused", CompileOptions())
            frontend(loaded)
            for target in TARGETS:
                cap = None
                for objective in OBJECTIVES:
                    c = _place(loaded, target, objective, cap if objective == "energy" else None, 5.0)
                    if objective == "latency":
                        cap = round(ENERGY_CAP * c.placement.predicted_ms, 3)
                    rows.append(
                        {
                            "model": name,
                            "target": target,
                            "objective": objective,
                            "cap_ms": cap if objective == "energy" else None,
                            **_summary(c),
                            "flips": _sensitivity(
                                loaded, c, target, objective, cap if objective == "energy" else None, folder
                            ),
                        }
                    )
                    bar.advance(task)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    out = []
    for target in TARGETS:
        out += [
            f"#### {target} (simulated)",
            "",
            "| model | objective | processors (ops) | predicted ms | energy mJ | CPU alone ms / mJ | "
            "GPU alone ms / mJ | NPU alone ms / mJ | sensitivity: what changes the choice |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in (r for r in rows if r["target"] == target):
            ops = ", ".join(f"{d} {n}" for d, n in sorted(r["ops"].items()))
            alone = [" / ".join(map(str, r["alone"][d])) if d in r["alone"] else "-" for d in ("cpu", "gpu", "npu")]
            objective = r["objective"] + (f" (cap {r['cap_ms']} ms)" if r["cap_ms"] else "")
            stage = " (slowest stage)" if r["objective"] == "throughput" else ""
            flips = "; ".join(r["flips"]) or "none of the stated ranges"
            out.append(
                f"| {r['model']} | {objective} | {ops} | {r['predicted_ms']}{stage} | {r['energy_mj']} | "
                f"{alone[0]} | {alone[1]} | {alone[2]} | {flips} |"
            )
        out.append("")
    out.append("Generated by `python -m bench.npu.plans --write-doc`; every figure is simulated from the target files.")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="bert,llama,resnet50,mobilenet_v2")
    parser.add_argument("--write-doc", action="store_true", help="Rewrite the plan tables in docs/npu.md.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = run(args.models.split(","), Path(tmp))
    (ROOT / "docs" / "results" / "npu-plans.json").write_text(json.dumps(rows, indent=1) + "\n")
    table = markdown(rows)
    print(table)
    if args.write_doc:
        write_region("plans", table)


if __name__ == "__main__":
    main()
