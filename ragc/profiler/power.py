"""The power counters this machine exposes and whether this user can read them: RAPL energy (powercap
`energy_uj`, root-only on most systems since 2020), amdgpu's `power1_average` (hwmon, microwatts) and NVIDIA's
NVML through `nvidia-smi`. `ragc selftest` reads the readable ones around its timed runs to measure energy per
inference, the figure the target files' power section predicts."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Counter:
    name: str
    kind: str  # "energy_uj" (cumulative microjoules), "power_uw" (average microwatts) or "nvml_w" (watts)
    path: str  # the sysfs file, or "nvidia-smi"
    readable: bool
    detail: str


def _sysfs(path: Path, name: str, kind: str) -> Counter:
    try:
        int(path.read_text().split()[0])
        return Counter(name, kind, str(path), True, "readable")
    except PermissionError:
        return Counter(name, kind, str(path), False, "root only (RAPL energy_uj is 0400 since Linux 5.10)")
    except (OSError, ValueError, IndexError) as exc:
        return Counter(name, kind, str(path), False, f"unreadable ({type(exc).__name__})")


def counters(sys_root: Path = Path("/sys"), nvidia_smi: str | None = "nvidia-smi") -> list[Counter]:
    """Every counter found, readable or not."""
    found = []
    for zone in sorted((sys_root / "class" / "powercap").glob("*/energy_uj")):
        label = zone.parent / "name"
        name = f"rapl {label.read_text().strip() if label.is_file() else zone.parent.name}"
        found.append(_sysfs(zone, name, "energy_uj"))
    for hwmon in sorted((sys_root / "class" / "hwmon").glob("hwmon*")):
        chip = hwmon / "name"
        if chip.is_file() and chip.read_text().strip() == "amdgpu" and (hwmon / "power1_average").exists():
            found.append(_sysfs(hwmon / "power1_average", f"amdgpu {hwmon.name}", "power_uw"))
    tool = shutil.which(nvidia_smi) if nvidia_smi else None
    if tool:
        found.append(Counter("nvml", "nvml_w", tool, read(Counter("nvml", "nvml_w", tool, True, "")) is not None, ""))
    return found


def read(counter: Counter) -> float | None:
    """The counter's value now (uJ, uW or W), None when it cannot be read."""
    if counter.kind == "nvml_w":
        try:
            out = subprocess.run(
                [counter.path, "--query-gpu=power.draw", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout
            return float(out.split()[0])
        except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
            return None
    try:
        return float(Path(counter.path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def energy_mj(before: float, after: float, counter: Counter, seconds: float) -> float:
    """mJ between two readings of a counter over `seconds` (cumulative uJ, or average power times time)."""
    if counter.kind == "energy_uj":
        return (after - before) / 1e3
    watts = (before + after) / 2 / (1e6 if counter.kind == "power_uw" else 1.0)
    return watts * seconds * 1e3
