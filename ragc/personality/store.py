"""The chip personality: what each processor of one chip costs, stored as schema-versioned JSON per chip id.

Layout of a personality (and of a target file, which is one without samples):
    {"schema": 2, "chip_id": str, "unified_memory": bool,
     "devices": {dev: {"name", "peak_gflops", "peak_gbps", "dispatch_ms", "op_overhead_ms", "memory_bytes",
                       "samples": [{"op_type", "features": {...}, "ms", "source": "profile"|"run", "model"?}]}},
     "transfers": {"src->dst": {"latency_ms", "gbps"}}, "chip": {facts}, "npu": {...}?, "sources": {...}?}
`dispatch_ms` is paid once per partition launch; `op_overhead_ms` once per op (kernel) inside a partition;
`kernel_scale` (default 1) turns the kernel times samples hold into what they add to a run's wall time (GPU
timestamps leave out a few percent; see gpu_bench.fit_launch). Since schema 2 a sample's features are those of its
device's kernel as a whole (costmodel.kernel_features: a fused GPU attention or onnxruntime's fused CPU kernel), where
schema 1 held the anchor op's alone; older personalities are measured again.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ragc.errors import PersonalityError
from ragc.targets import load_target, target_path

SCHEMA = 2
DEVICE_ORDER = ("cpu", "gpu", "npu")


class Personality:
    """A read view over a personality dict, plus the few derived numbers placement needs."""

    def __init__(self, data: dict[str, Any], path: Path | None = None):
        if data.get("schema") != SCHEMA:
            raise PersonalityError(
                f"personality schema {data.get('schema')!r} is not {SCHEMA}; run `ragc profile` to measure it again"
            )
        if "cpu" not in data.get("devices", {}):
            raise PersonalityError("personality has no 'cpu' device; run `ragc profile` to measure it again")
        self.data = data
        self.path = path

    @property
    def chip_id(self) -> str:
        return str(self.data["chip_id"])

    @property
    def unified_memory(self) -> bool:
        return bool(self.data.get("unified_memory", False))

    @property
    def devices(self) -> list[str]:
        """Device names, cpu first."""
        names = self.data["devices"]
        return [d for d in DEVICE_ORDER if d in names] + sorted(d for d in names if d not in DEVICE_ORDER)

    @property
    def is_target(self) -> bool:
        return self.data.get("kind") == "target"

    def device(self, device: str) -> dict[str, Any]:
        try:
            return self.data["devices"][device]
        except KeyError:
            raise PersonalityError(
                f"personality {self.chip_id} has no device {device!r} (it has {', '.join(self.devices)}); "
                "profile on a machine with it or use a target file that describes it"
            ) from None

    def samples(self, device: str) -> list[dict[str, Any]]:
        return self.device(device).setdefault("samples", [])

    def dispatch_ms(self, device: str) -> float:
        """What launching one partition on `device` costs: measured glue first, else the one-op figure."""
        glue = self.data.get("glue", {}).get("launch_ms", {})
        return float(glue[device] if device in glue else self.device(device).get("dispatch_ms", 0.0))

    @property
    def fixed_ms(self) -> float:
        """What every run of a plan costs besides its partitions (measured glue; 0 where none was measured)."""
        return float(self.data.get("glue", {}).get("fixed_ms", 0.0))

    def op_ms(self, device: str, kernel_ms: float) -> float:
        """What one op whose kernel takes `kernel_ms` adds to a run of a partition on `device`."""
        spec = self.device(device)
        return float(spec.get("kernel_scale", 1.0)) * kernel_ms + float(spec.get("op_overhead_ms", 0.0))

    def kernel_ms(self, device: str, op_ms: float) -> float:
        """The inverse of op_ms: the kernel time of an op that added `op_ms` to a run."""
        spec = self.device(device)
        return (op_ms - float(spec.get("op_overhead_ms", 0.0))) / float(spec.get("kernel_scale", 1.0))

    @property
    def capacity_bytes(self) -> dict[str, int]:
        return {d: int(self.device(d)["memory_bytes"]) for d in self.devices if "memory_bytes" in self.device(d)}

    def _link(self, src: str, dst: str) -> dict[str, float] | None:
        """Measured glue of real multi-partition plans first, else the copy micro-benchmark's figures."""
        pair = f"{src}->{dst}"
        return self.data.get("glue", {}).get("handoff", {}).get(pair) or self.data.get("transfers", {}).get(pair)

    def transfer_ms(self, src: str, dst: str, nbytes: int) -> float:
        """Time to make `nbytes` written on `src` readable on `dst`; 0 on the same device. Pairs not measured
        directly go through the host (src -> cpu -> dst)."""
        if src == dst:
            return 0.0
        link = self._link(src, dst)
        if link is None:
            if "cpu" in (src, dst) or self._link(src, "cpu") is None or self._link("cpu", dst) is None:
                raise PersonalityError(
                    f"personality {self.chip_id} has no transfer figures for {src}->{dst}; run `ragc profile`"
                )
            return self.transfer_ms(src, "cpu", nbytes) + self.transfer_ms("cpu", dst, nbytes)
        return float(link["latency_ms"]) + nbytes / (float(link["gbps"]) * 1e6)

    def to_dict(self) -> dict[str, Any]:
        return self.data


def store_dir() -> Path:
    """$XDG_CACHE_HOME/ragc/personality (default ~/.cache/ragc/personality)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ragc" / "personality"


def store_path(chip: str) -> Path:
    return store_dir() / f"{chip}.json"


def save_personality(personality: Personality, path: Path | None = None) -> Path:
    """Write atomically (temp file in the same folder, then rename) to `path` or the store; returns the path."""
    path = Path(path) if path else store_path(personality.chip_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(personality.to_dict(), f, sort_keys=True, indent=1)
            f.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a personality is no secret
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    personality.path = path
    return path


def read_personality(path: str | Path) -> Personality:
    """A personality or target JSON file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PersonalityError(f"personality file {path} is not readable JSON ({exc}); run `ragc profile`") from exc
    if data.get("kind") == "target":
        return Personality(load_target(path), path)
    return Personality(data, path)


def current_chip_id() -> str:
    from ragc.personality.chip import chip_facts, chip_id

    return chip_id(chip_facts())


def load_personality(target: str | Path | None = None) -> Personality:
    """None: this chip's stored personality (PersonalityError when it was never profiled).
    A name from ragc/targets/ or a path: that target or personality file."""
    if target is not None:
        if target_path(str(target)):
            return Personality(load_target(str(target)))
        if not Path(target).is_file():
            from ragc.targets import target_names

            raise PersonalityError(
                f"no target or personality file {str(target)!r}; use one of {', '.join(target_names())} or a path"
            )
        return read_personality(target)
    path = store_path(current_chip_id())
    if not path.is_file():
        raise PersonalityError(f"this chip has no personality yet ({path}); run `ragc profile --quick` first")
    return read_personality(path)
