"""latency.png: per model, one bar per system (median ms, log scale)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.tables import SYSTEM_LABELS, median


def plot_latency(results: dict[str, Any], path: Path) -> str | None:
    """Write the chart; returns a note instead when matplotlib is missing or there is nothing to draw."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "latency.png skipped: matplotlib is not installed (pip install 'ragc[bench]')"
    models = [m for m in results["models"] if any(median(r) for r in m.get("systems", {}).values())]
    systems = [s for s in SYSTEM_LABELS if any(median(m["systems"].get(s)) for m in models)]
    if not models or not systems:
        return "latency.png skipped: no model has a measured latency"
    width = 0.8 / len(systems)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(models) + 2), 4.5))
    for i, system in enumerate(systems):
        xs = [j + (i - (len(systems) - 1) / 2) * width for j in range(len(models))]
        ys = [median(m["systems"].get(system)) or 0.0 for m in models]
        ax.bar(xs, ys, width, label=SYSTEM_LABELS[system])
    ax.set_yscale("log")
    ax.set_ylabel("median latency, ms (log)")
    ax.set_xticks(range(len(models)), [m["name"] for m in models], rotation=30, ha="right")
    title = f"batch 1 latency on {results['environment']['cpu'].get('model', '?')}"
    if results["environment"].get("software_gpu"):
        title += "\nGPU bars: lavapipe (Vulkan on the CPU), not GPU performance"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)
    return None
