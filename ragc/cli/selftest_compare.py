"""`ragc selftest --compare REPORT`: a selftest report held against a target file: the measured CPU and GPU peaks,
launch costs and transfers (from the report's quick profile) next to the target's figures, the NPU's measured
kernel times next to the XDNA model's, each ratio flagged where it is off by more than a third."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

OFF_BY = 1.33
GUESSES = {"hx 370": "ryzen-ai-9-hx-370", "7840u": "ryzen-7-7840u"}  # CPU model name fragment -> target
FIGURES = ("peak_gflops", "peak_gbps", "dispatch_ms", "op_overhead_ms")


def guess_target(report: dict[str, Any]) -> str | None:
    model = str(report.get("machine", {}).get("cpu", {}).get("model", "")).lower()
    return next((target for fragment, target in GUESSES.items() if fragment in model), None)


def comparison_rows(report: dict[str, Any], target: dict[str, Any]) -> list[tuple[str, float, float]]:
    """(figure, the target's value, the measured value) for every figure both give."""
    rows = []
    for device, measured in report.get("profile", {}).items():
        if device == "transfers" or device not in target["devices"]:
            continue
        for key in FIGURES:
            if isinstance(measured.get(key), (int, float)) and key in target["devices"][device]:
                rows.append((f"devices.{device}.{key}", float(target["devices"][device][key]), float(measured[key])))
    for pair, link in report.get("profile", {}).get("transfers", {}).items():
        if pair in target.get("transfers", {}):
            for key in ("latency_ms", "gbps"):
                rows.append((f"transfers.{pair}.{key}", float(target["transfers"][pair][key]), float(link[key])))
    for entry in (e for e in report.get("npu_measured", []) if e.get("measured_ms") is not None):
        rows.append((f"npu kernel {entry['kernel']}", float(entry["predicted_ms"]), float(entry["measured_ms"])))
    return rows


def print_comparison(report: dict[str, Any], target_name: str | None, console: Console) -> None:
    from ragc.errors import UsageError
    from ragc.targets import load_target

    name = target_name or guess_target(report)
    if name is None:
        raise UsageError("cannot tell which target file this report's chip is: give --target NAME or a target file")
    target = load_target(name)
    rows = comparison_rows(report, target)
    table = Table("figure", "target", "measured", "measured / target", title=f"report against {name}")
    for figure, expected, measured in rows:
        ratio = measured / expected if expected else float("inf")
        style = "red" if not 1 / OFF_BY <= ratio <= OFF_BY else "green"
        table.add_row(figure, f"{expected:g}", f"{measured:g}", f"[{style}]{ratio:.2f}[/]")
    console.print(table)
    failed = [r for r in report.get("conformance", []) if r.get("status") in ("fail", "error")]
    simulated = sum(1 for r in report.get("conformance", []) if r.get("simulated"))
    console.print(f"conformance: {len(failed)} failing of {len(report.get('conformance', []))} ({simulated} simulated)")
    if not rows:
        console.print("the report has no profile or NPU measurements to compare (it was run with --skip-profile?)")
