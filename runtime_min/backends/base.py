"""The one interface every processor backend implements: open the device, prepare a partition, run it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class StepTiming:
    """One timed piece of work inside a partition run (a kernel, a dispatch), in nanoseconds."""

    label: str
    start_ns: int
    duration_ns: int
    simulated: bool = False


class Executable(ABC):
    """A partition made ready on one processor: weights uploaded, pipelines or sessions built once."""

    @abstractmethod
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once, blocking (with the GIL released while the device works); returns the partition outputs."""

    def timings(self) -> list[StepTiming]:
        """Timings of the last run, if the backend measures them (GPU timestamps, simulated NPU clock)."""
        return []

    def close(self) -> None:
        """Release device resources held by this executable."""


class Backend(ABC):
    """One processor. Subclasses are constructed by `open` and raise BackendUnavailable when they cannot start."""

    device: str  # "cpu" | "gpu" | "npu"
    simulated: bool = False

    @classmethod
    @abstractmethod
    def open(cls, options: dict[str, Any]) -> Backend:
        """Start the processor (options come from runtime_min.load keyword arguments)."""

    @abstractmethod
    def prepare(self, partition: dict[str, Any], bundle_dir: Path) -> Executable:
        """Load one partition of schedule.json (its `artifact` entry names the files, relative to bundle_dir)."""

    def describe(self) -> str:
        """One line naming the processor actually used (for logs and traces)."""
        return self.device

    def close(self) -> None:
        """Release the device."""
