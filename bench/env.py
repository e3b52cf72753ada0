"""The machine and software a benchmark ran on: CPU, GPUs and driver, package versions."""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Any

from bench.systems import package_version

PACKAGES = (
    "ragc",
    "numpy",
    "onnx",
    "onnxruntime",
    "iree-base-compiler",
    "iree-base-runtime",
    "torch",
    "torchvision",
    "vulkan",
    "scipy",
    "scikit-learn",
)
SOFTWARE_GPUS = ("llvmpipe", "lavapipe", "swiftshader")


def environment() -> dict[str, Any]:
    facts = _chip_facts()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "chip_id": facts.get("id"),
        "cpu": facts["cpu"],
        "gpus": [{k: g.get(k) for k in ("name", "vendor_id", "device_id", "driver_version")} for g in facts["gpus"]],
        "nvidia_smi": _nvidia_smi(),
        "software_gpu": any(s in g["name"].lower() for g in facts["gpus"] for s in SOFTWARE_GPUS),
        "versions": {name: package_version(name) for name in PACKAGES},
        "load_average": [round(x, 2) for x in os.getloadavg()],  # other work on the machine skews timings
    }


def _chip_facts() -> dict[str, Any]:
    """ragc's view of this chip (CPU, Vulkan GPUs, id); a bare CPU entry when that cannot be read."""
    try:
        from ragc.personality.chip import chip_facts, chip_id

        facts = chip_facts()
        return {**facts, "id": chip_id(facts)}
    except Exception as exc:  # the report must still come out: say what is missing instead
        return {"cpu": {"model": platform.processor() or "unknown", "error": str(exc)}, "gpus": []}


def _nvidia_smi() -> str | None:
    """`name, driver_version` per NVIDIA GPU, or None without nvidia-smi."""
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None
