"""The decision rule the compiler writes into an adaptive bundle: rows in priority order, each a variant with the
signal thresholds that enter it (any) and, higher or lower, the ones that leave it (all): the gap is the hysteresis.
runtime_min.adaptive.rule reads and follows it; the thresholds live here only."""

from __future__ import annotations

from typing import Any

RULE_VERSION = 1
PROBE_EVERY = 12  # held by a step-time row, probe the default variant once in this many runs to see it recover
PROBE_RUNS = 2  # a probe: this many runs in a row (the first warms a processor left idle): 2 in 12, 16.7 % of runs
WINDOW = 3  # the step-time signal: median of the default variant's last runs over its baseline,
BASELINE_RUNS = 10  # the median of its first runs since load
SLOWDOWN = 1.5  # the least slowdown of the default variant that leaves the GPU (1.3 comes back: the hysteresis)


def _row(variant: str, enter: list[list[Any]], leave: list[list[Any]]) -> dict[str, Any]:
    return {"variant": variant, "enter": enter, "leave": leave}


def compile_rule(variants: list[str], devices: list[str], predicted: dict[str, float] | None = None) -> dict[str, Any]:
    """The rule for a bundle holding `variants` (the first is the default) compiled for `devices`; `predicted` (ms
    per variant) raises the step-time threshold to where leaving the GPU pays: slowdown above no-gpu's predicted
    time over the default's."""
    rows = []
    if "no-gpu" in variants:
        pays = (predicted or {}).get("no-gpu", 0.0) / ((predicted or {}).get(variants[0]) or 1.0)
        slow = round(max(SLOWDOWN, pays), 3)
        rows.append(
            _row(
                "no-gpu",
                [["gpu_present", "<", 1], ["gpu_busy", ">=", 85], ["slowdown", ">=", slow]],
                [["gpu_present", ">=", 1], ["gpu_busy", "<", 60], ["slowdown", "<", 1.3]],
            )
        )
    if "gpu-busy" in variants:
        rows.append(_row("gpu-busy", [["gpu_busy", ">=", 40]], [["gpu_busy", "<", 25]]))
    if "no-npu" in variants and "npu" in devices:
        rows.append(_row("no-npu", [["npu_present", "<", 1]], [["npu_present", ">=", 1]]))
    if "energy" in variants:
        rows.append(
            _row(
                "energy", [["on_battery", ">=", 1], ["temp_c", ">=", 90]], [["on_battery", "<", 1], ["temp_c", "<", 80]]
            )
        )
    rows = [r for r in rows if r["variant"] != variants[0]]
    return {
        "version": RULE_VERSION,
        "default": variants[0],
        "probe_every": PROBE_EVERY,
        "probe_runs": PROBE_RUNS,
        "window": WINDOW,
        "baseline_runs": BASELINE_RUNS,
        "rows": rows,
    }
