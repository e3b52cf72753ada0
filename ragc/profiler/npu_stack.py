"""What of the XDNA NPU software stack this machine has: the Linux kernel (the in-tree amdxdna driver needs 6.14 or
later), the amdxdna module, /dev/accel nodes, NPU firmware files, XRT (xrt-smi) and pyxrt. Read-only probes, each
with a one-line finding and, where something is missing, what to install; nothing here needs root."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

MIN_KERNEL = (6, 14)  # amdxdna went into mainline Linux in 6.14
FIRMWARE_DIRS = (Path("/lib/firmware/amdnpu"), Path("/usr/lib/firmware/amdnpu"))


@dataclass(frozen=True)
class Finding:
    part: str
    found: bool
    detail: str  # what was found, or what is missing and how to get it


def kernel_finding(release: str | None = None) -> Finding:
    release = release or platform.release()
    match = re.match(r"(\d+)\.(\d+)", release)
    version = (int(match[1]), int(match[2])) if match else (0, 0)
    ok = version >= MIN_KERNEL
    need = (
        "" if ok else "; the in-tree amdxdna driver needs Linux {}.{}+ (or build amd/xdna-driver)".format(*MIN_KERNEL)
    )
    return Finding("kernel", ok, f"Linux {release}{need}")


def module_finding(sys_module: Path = Path("/sys/module/amdxdna")) -> Finding:
    if not sys_module.is_dir():
        return Finding("amdxdna", False, "module not loaded: `modprobe amdxdna` (kernel 6.14+ or amd/xdna-driver)")
    version = sys_module / "version"
    return Finding("amdxdna", True, version.read_text().strip() if version.is_file() else "loaded")


def accel_finding(accel: Path = Path("/dev/accel")) -> Finding:
    nodes = sorted(str(p) for p in accel.glob("accel*")) if accel.is_dir() else []
    if not nodes:
        return Finding("/dev/accel", False, "no /dev/accel/accel* node: no NPU, or the driver did not bind")
    return Finding("/dev/accel", True, ", ".join(nodes))


def firmware_finding(dirs: tuple[Path, ...] = FIRMWARE_DIRS) -> Finding:
    files = sorted(str(p) for d in dirs if d.is_dir() for p in d.rglob("*.sbin"))
    if not files:
        return Finding("firmware", False, "no amdnpu/*/npu*.sbin under /lib/firmware: install linux-firmware 2025+")
    return Finding("firmware", True, f"{len(files)} image(s), e.g. {files[0]}")


def xrt_finding() -> Finding:
    tool = shutil.which("xrt-smi") or next((p for p in ("/opt/xilinx/xrt/bin/xrt-smi",) if Path(p).is_file()), None)
    if tool is None:
        return Finding("XRT", False, "xrt-smi not found: install XRT with the amdxdna plug-in (amd/xdna-driver)")
    try:
        out = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Finding("XRT", False, f"{tool} did not answer ({type(exc).__name__})")
    version = re.search(r"Version\s*:\s*(\S+)", out)
    return Finding("XRT", True, f"{tool} {version[1] if version else out.strip()[:60]}")


def pyxrt_finding() -> Finding:
    try:
        import pyxrt
    except ImportError as exc:
        return Finding("pyxrt", False, f"not importable ({exc}): source /opt/xilinx/xrt/setup.sh")
    users = "user-pointer bos" if hasattr(getattr(pyxrt, "ext", None), "bo") else "no pyxrt.ext.bo (copies)"
    return Finding("pyxrt", True, f"{getattr(pyxrt, '__file__', 'pyxrt')} ({users})")


def npu_stack() -> list[Finding]:
    """Every probe, in the order the stack is brought up."""
    return [kernel_finding(), module_finding(), accel_finding(), firmware_finding(), xrt_finding(), pyxrt_finding()]
