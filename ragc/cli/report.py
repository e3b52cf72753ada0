"""What the CLI shows about a plan: the partition table, a JSON summary, random feeds, medians."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from ragc.cli.output import console as new_console
from ragc.cli.output import table


def plan_summary(plan_dir: str | Path, verify_hashes: bool = True) -> dict[str, Any]:
    """The stable `ragc inspect --json` view; tools rely on these keys."""
    from runtime_min.manifest import read_bundle

    bundle = read_bundle(plan_dir, verify_hashes)
    manifest, schedule = bundle.manifest, bundle.schedule
    return {
        "predicted_ms": manifest.get("predicted_ms"),
        "energy_mj": manifest.get("energy_mj"),
        "solver": manifest.get("solver"),
        "gap": manifest.get("gap"),
        "objective": schedule.get("objective"),
        "processors": schedule["processors"],
        "partitions": [
            {
                "id": p["id"],
                "device": p["device"],
                "ops": p["ops"],
                "predicted_ms": p.get("predicted_ms"),
                "energy_mj": p.get("predicted_energy_mj"),
                **_precision(p),
            }
            for p in schedule["partitions"]
        ],
        "transfers": schedule.get("transfers", []),
        "measured_ms": manifest.get("measured_ms"),
        "chosen": manifest.get("chosen"),
        "candidates": manifest.get("candidates", []),
    }


def _precision(partition: dict[str, Any]) -> dict[str, Any]:
    """A partition's "precision" (the NPU's float kernels compute in bf16) and, for a checked GPU partition, its
    check: "precision_requested", "precision_check", "precision_error", "precision_tolerance", "precision_detail"
    (what is stored and computed in 16 bits) or "precision_note" (why it fell back to fp32)."""
    artifact = partition.get("artifact", {})
    keys = [k for k in artifact if k.startswith("precision_")]
    default = "bf16" if partition["device"] == "npu" else "fp32"
    return {"precision": artifact.get("precision", default), **{k: artifact[k] for k in sorted(keys)}}


def simulation_summary(plan_dir: str | Path) -> dict[str, Any]:
    """The stable `ragc simulate --json` view: plan latency and energy, each partition's span and active energy
    (simulated on the compiled-for chip; the plan's energy also counts every processor's idle power)."""
    from runtime_min.manifest import read_bundle

    bundle = read_bundle(plan_dir)
    return {
        "predicted_ms": bundle.manifest.get("predicted_ms"),
        "energy_mj": bundle.manifest.get("energy_mj"),
        "partitions": [
            {
                "id": p["id"],
                "device": p["device"],
                "start_ms": p.get("predicted_start_ms"),
                "finish_ms": p.get("predicted_finish_ms"),
                "energy_mj": p.get("predicted_energy_mj"),
            }
            for p in bundle.schedule["partitions"]
        ],
    }


def print_partitions(plan_dir: str | Path, console: Console | None = None, verify_hashes: bool = True) -> None:
    summary = plan_summary(plan_dir, verify_hashes)
    energy = "" if summary["energy_mj"] is None else f", {_ms(summary['energy_mj'])} mJ per request"
    caption = f"predicted latency {_ms(summary['predicted_ms'])} ms{energy}; {len(summary['transfers'])} transfers"
    title = f"plan {plan_dir} (solver {summary['solver']})"
    columns = ("partition", "processor", "ops", "first op", "predicted ms", "energy mJ")
    parts = table(*columns, title=title, caption=caption, right=("ops", "predicted ms", "energy mJ"))
    for p in summary["partitions"]:
        first = p["ops"][0] if p["ops"] else "-"
        parts.add_row(p["id"], p["device"], str(len(p["ops"])), first, _ms(p["predicted_ms"]), _ms(p["energy_mj"]))
    console = console or new_console()
    console.print(parts)
    if any(c.get("measured_ms") is not None for c in summary["candidates"]):
        tuned = table("candidate", "predicted ms", "measured ms", right=("predicted ms", "measured ms"),
                      title="candidate plans timed on this chip (the kept one marked *)")  # fmt: skip
        for c in summary["candidates"]:
            mark = " *" if c["name"] == summary["chosen"] else ""
            tuned.add_row(c["name"] + mark, _ms(c["predicted_ms"]), _ms(c["measured_ms"]))
        console.print(tuned)


def write_timeline(plan_dir: str | Path, path: str | Path) -> None:
    """The predicted timeline SVG the compiler stored in the bundle (one lane per processor)."""
    from runtime_min.manifest import read_bundle

    Path(path).write_bytes(read_bundle(plan_dir).path("timeline.svg", "inspect --timeline").read_bytes())


def print_simulation(plan_dir: str | Path, console: Console | None = None, width: int = 40) -> None:
    """Each partition's predicted span as a bar on its processor's lane, then the plan against each processor
    alone. NPU times of a simulated NPU are predictions, like every number here: nothing is run."""
    from runtime_min.manifest import read_bundle

    bundle = read_bundle(plan_dir)
    manifest, schedule = bundle.manifest, bundle.schedule
    console = console or new_console()
    end = max((p.get("predicted_finish_ms") or 0.0) for p in schedule["partitions"]) or 1.0
    title = f"predicted timeline of {plan_dir} on chip {manifest.get('chip_id')} (0 .. {end:.3f} ms)"
    spans = table(
        "partition", "processor", "start ms", "finish ms", "timeline", title=title, right=("start ms", "finish ms")
    )
    for p in sorted(schedule["partitions"], key=lambda p: (p.get("predicted_start_ms") or 0.0, p["id"])):
        start, finish = p.get("predicted_start_ms") or 0.0, p.get("predicted_finish_ms") or 0.0
        left, right = round(start / end * width), max(round(finish / end * width), round(start / end * width) + 1)
        bar = " " * left + "█" * (right - left)
        spans.add_row(p["id"], p["device"], f"{start:.3f}", f"{finish:.3f}", bar)
    console.print(spans)
    energy = manifest.get("energy_mj")
    shown = "" if energy is None else f", {energy:.3f} mJ per request"
    console.print(f"plan: {_ms(manifest.get('predicted_ms'))} ms predicted{shown} ({manifest.get('solver')})")
    energies = manifest.get("baselines_energy_mj", {})
    for device, ms in sorted(manifest.get("baselines_ms", {}).items()):
        ratio = ms / manifest["predicted_ms"] if manifest.get("predicted_ms") else float("nan")
        mj = f", {energies[device]:.3f} mJ" if device in energies else ""
        console.print(f"  {device} alone (CPU for what it cannot run): {ms:.3f} ms{mj}, {ratio:.2f}x the plan")
    if manifest.get("chip_id", "").startswith("target-"):
        console.print("all times and energies are simulated from the target file's figures; nothing ran")


def random_feeds(specs, seed: int = 0) -> dict[str, np.ndarray]:
    """Fresh random inputs for a plan's (or model's) input specs: floats in [0, 1), small ints, random bools."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in specs:
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            feeds[spec.name] = rng.random(spec.shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[spec.name] = rng.random(spec.shape) < 0.5
        else:
            feeds[spec.name] = rng.integers(0, 2, spec.shape).astype(dtype)
    return feeds


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
