"""Target files: personalities of chips that are not present, built from published figures (each with a source)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ragc.errors import PersonalityError

TARGETS_DIR = Path(__file__).resolve().parent
DEVICE_KEYS = ("peak_gflops", "peak_gbps", "dispatch_ms", "op_overhead_ms", "memory_bytes")
NPU_KEYS = (
    "arch",
    "tiles",
    "macs_per_cycle_per_tile",
    "clock_ghz",
    "dma_gbps",
    "dispatch_us",
    "host_sync_ms",
    "cold_start_ms",
    "measured_bf16_gemm_tflops",
)


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
    for dev, spec in sorted(devices.items()):
        for key in DEVICE_KEYS:
            if not isinstance(spec.get(key), (int, float)):
                raise PersonalityError(f"{where}: devices.{dev}.{key} is missing or not a number; add it with a source")
            if f"devices.{dev}.{key}" not in sources:
                raise PersonalityError(f"{where}: devices.{dev}.{key} has no 'sources' entry; cite where it comes from")
    if len(devices) > 1 and "transfers" not in sources:
        raise PersonalityError(f"{where}: 'transfers' has no entry in 'sources'; cite where the figures come from")
    if "npu" in devices:
        missing = [k for k in NPU_KEYS if k not in data.get("npu", {}) or f"npu.{k}" not in sources]
        if missing:
            raise PersonalityError(f"{where}: npu section lacks {', '.join(missing)} (or their sources); add them")
    return data


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
