"""Target files: personalities of chips that are not present, built from published figures (each with a source)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ragc.errors import PersonalityError

TARGETS_DIR = Path(__file__).resolve().parent
DEVICE_KEYS = ("peak_gflops", "peak_gbps", "dispatch_ms", "op_overhead_ms", "memory_bytes")
NPU_DERIVED = ("peak_gflops", "peak_gbps", "dispatch_ms", "op_overhead_ms")  # devices.npu figures the npu section gives
# the XDNA model's figures (ragc.costmodel.npu: the array's, then the launches')
NPU_KEYS = (
    "arch",
    "columns",
    "rows",
    "clock_ghz",
    "macs_per_cycle",
    "mmul",
    "vector_lanes",
    "l1_bytes",
    "memtile_bytes",
    "stream_bytes_per_cycle",
    "shim_channels",
    "ddr_gbps",
    "accumulator_block_cycles",
    "host_sync_ms",
    "runlist_entry_ms",
    "context_switch_ms",
    "cold_start_ms",
    "idle_power_down_ms",
)
POWER_KEYS = ("active_w", "idle_w")


def target_names() -> list[str]:
    """Names of the target files shipped with ragc."""
    return sorted(p.stem for p in TARGETS_DIR.glob("*.json"))


def target_path(name: str) -> Path | None:
    """The shipped target file called `name`, or None."""
    path = TARGETS_DIR / f"{name}.json"
    return path if name in target_names() else None


def check_target(data: dict[str, Any], where: str) -> dict[str, Any]:
    """Raise PersonalityError unless `data` gives the cost model every figure it needs, each with a source."""
    devices = data.get("devices")
    if not isinstance(devices, dict) or "cpu" not in devices:
        raise PersonalityError(f"{where}: no 'devices.cpu' section; add one with {', '.join(DEVICE_KEYS)}")
    sources = data.get("sources", {})
    if "npu" in devices:
        _check_npu(data, sources, where)
    for dev, spec in sorted(devices.items()):
        for key in DEVICE_KEYS:
            if dev == "npu" and key in NPU_DERIVED:
                continue
            if not isinstance(spec.get(key), (int, float)):
                raise PersonalityError(f"{where}: devices.{dev}.{key} is missing or not a number; add it with a source")
            if f"devices.{dev}.{key}" not in sources:
                raise PersonalityError(f"{where}: devices.{dev}.{key} has no 'sources' entry; cite where it comes from")
    if len(devices) > 1 and "transfers" not in sources:
        raise PersonalityError(f"{where}: 'transfers' has no entry in 'sources'; cite where the figures come from")
    _check_power(data, sources, where)
    _check_uncertainty(data, where)
    return data


def _check_npu(data: dict[str, Any], sources: dict[str, Any], where: str) -> None:
    """The npu section: every figure of the XDNA model with a source; devices.npu's launch and peak figures are
    derived from it (written once, here), not given twice. The XDNA model checks the values when it is built."""
    section = data.get("npu", {})
    missing = [k for k in NPU_KEYS if k not in section or f"npu.{k}" not in sources]
    if missing:
        raise PersonalityError(f"{where}: npu section lacks {', '.join(missing)} (or their sources); add them")
    try:
        derived = {
            "peak_gflops": 2 * npu_peak_macs_per_s(section, "bf16") / 1e9,
            "peak_gbps": npu_dram_bytes_per_s(section) / 1e9,
            "dispatch_ms": float(section["host_sync_ms"]),
            "op_overhead_ms": float(section["runlist_entry_ms"]),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise PersonalityError(f"{where}: the npu section is malformed ({exc}); fix its figures") from exc
    data["devices"]["npu"].update(derived)
    sources.update({f"devices.npu.{k}": f"derived from the npu section ({k})" for k in derived})


def npu_peak_macs_per_s(npu: dict[str, Any], dtype: str) -> float:
    """The array's peak MAC rate: every compute tile's matrix unit, one mmul per cycle."""
    return npu["columns"] * npu["rows"] * npu["macs_per_cycle"][dtype] * npu["clock_ghz"] * 1e9


def npu_dram_bytes_per_s(npu: dict[str, Any]) -> float:
    """DDR bandwidth the array reaches, capped by what the shim streams carry in one direction."""
    shim = npu["columns"] * npu["shim_channels"] * npu["stream_bytes_per_cycle"] * npu["clock_ghz"] * 1e9
    return min(npu["ddr_gbps"] * 1e9, shim)


def _check_power(data: dict[str, Any], sources: dict[str, Any], where: str) -> None:
    """The optional power section: active and idle watts for every device, each with a source."""
    power = data.get("power")
    if power is None:
        return
    for dev in sorted(data["devices"]):
        for key in POWER_KEYS:
            value = power.get(dev, {}).get(key) if isinstance(power.get(dev), dict) else None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise PersonalityError(f"{where}: power.{dev}.{key} is missing or not a number >= 0; add it")
            if f"power.{dev}.{key}" not in sources:
                raise PersonalityError(f"{where}: power.{dev}.{key} has no 'sources' entry; cite where it comes from")


def _check_uncertainty(data: dict[str, Any], where: str) -> None:
    """The optional uncertainty section: dotted path -> [low, high] around the figure the target gives."""
    for path, bounds in sorted(data.get("uncertainty", {}).items()):
        value = figure(data, path)
        ok = isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, (int, float)) for b in bounds)
        if value is None or not ok or not bounds[0] <= value <= bounds[1]:
            raise PersonalityError(
                f"{where}: uncertainty[{path!r}] = {bounds!r} is not a [low, high] around that figure; fix it"
            )


def figure(data: dict[str, Any], path: str) -> float | None:
    """The number at a dotted path of a target (`npu.ddr_gbps`, `devices.gpu.peak_gflops`), or None."""
    node: Any = data
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return None if isinstance(node, bool) or not isinstance(node, (int, float)) else float(node)


def load_target(name_or_path: str | Path) -> dict[str, Any]:
    """A checked target: a shipped name (see target_names) or a path to a target JSON file."""
    path = target_path(str(name_or_path)) or Path(name_or_path)
    if not path.is_file():
        raise PersonalityError(
            f"target {str(name_or_path)!r} not found; use one of {', '.join(target_names())} or a JSON file path"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PersonalityError(f"target {path.name} is not readable JSON ({exc}); fix or regenerate it") from exc
    return check_target(data, path.name)
