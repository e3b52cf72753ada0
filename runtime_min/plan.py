"""A loaded plan: its processors opened, its partitions prepared, ready to run feeds."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime_min.backends import Backend, Executable, open_backend
from runtime_min.errors import BackendUnavailable, InputError
from runtime_min.executor import run_in_order


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int, ...]

    @classmethod
    def from_json(cls, spec: dict[str, Any]) -> TensorSpec:
        return cls(spec["name"], spec["dtype"], tuple(spec["shape"]))


@dataclass
class Step:
    """One partition made ready on the processor that will run it."""

    partition: dict[str, Any]
    device: str  # where it actually runs (the CPU when its processor fell back)
    executable: Executable


class Plan:
    def __init__(self, root: Path, manifest: dict[str, Any], schedule: dict[str, Any], options: dict[str, Any]):
        self.path = root
        self.manifest = manifest
        self.schedule = schedule
        self.inputs = [TensorSpec.from_json(s) for s in schedule["inputs"]]
        self.outputs = [TensorSpec.from_json(s) for s in schedule["outputs"]]
        self.backends: dict[str, Backend] = {}
        self.fallbacks: dict[str, str] = {}  # processor -> why its partitions run on the CPU
        self.steps = [self._prepare(p, options) for p in schedule["partitions"]]

    def _backend(self, device: str, options: dict[str, Any]) -> Backend | None:
        if device in self.backends:
            return self.backends[device]
        if device in self.fallbacks:
            return None
        disabled = {d.strip() for d in os.environ.get("RAGC_DISABLE", "").split(",") if d.strip()}
        try:
            if device in disabled:
                raise BackendUnavailable("disabled by RAGC_DISABLE")
            self.backends[device] = open_backend(device, options)
            return self.backends[device]
        except BackendUnavailable as exc:
            if device == "cpu":
                raise
            self.fallbacks[device] = str(exc)
            print(f"runtime_min: warning: {device} unavailable ({exc}); its partitions run on the CPU", file=sys.stderr)
            return None

    def _prepare(self, partition: dict[str, Any], options: dict[str, Any]) -> Step:
        device = partition["device"]
        backend = self._backend(device, options)
        if backend is not None:
            return Step(partition, device, backend.prepare(partition, self.path))
        cpu_view = {**partition, "artifact": partition["fallback"], "device": "cpu"}
        return Step(partition, "cpu", self._backend("cpu", options).prepare(cpu_view, self.path))

    def check_feeds(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        expected = {s.name: s for s in self.inputs}
        unknown = sorted(set(feeds) - set(expected))
        missing = sorted(set(expected) - set(feeds))
        if unknown or missing:
            raise InputError(
                f"inputs do not match the plan: missing {missing or 'none'}, unexpected {unknown or 'none'}; "
                f"the plan takes {', '.join(f'{s.name} {s.dtype}{list(s.shape)}' for s in self.inputs)}"
            )
        checked = {}
        for name, value in feeds.items():
            spec = expected[name]
            array = np.asarray(value)
            if array.dtype.name != spec.dtype:
                raise InputError(
                    f"input {name!r} has dtype {array.dtype.name}, the plan expects {spec.dtype}; "
                    f"convert it with .astype(np.{spec.dtype})"
                )
            if array.shape != spec.shape:
                raise InputError(
                    f"input {name!r} has shape {list(array.shape)}, the plan expects {list(spec.shape)}; "
                    "recompile with --shape to change it"
                )
            checked[name] = np.ascontiguousarray(array)
        return checked

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once: dict of numpy arrays in, dict of numpy arrays out (same inputs give the same bits)."""
        values = run_in_order(self.steps, self.check_feeds(feeds))
        return {s.name: values[s.name] for s in self.outputs}

    def close(self) -> None:
        for step in self.steps:
            step.executable.close()
        for backend in self.backends.values():
            backend.close()
        self.steps, self.backends = [], {}

    def __enter__(self) -> Plan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
