"""The one interface every processor backend implements: open the device, prepare a partition, run it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import astuple, dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from runtime_min.manifest import Bundle, Partition
    from runtime_min.options import LoadOptions


@dataclass(frozen=True)
class StepTiming:
    """One timed piece of work inside a partition run (a kernel, a dispatch), in nanoseconds."""

    label: str
    start_ns: int
    duration_ns: int
    simulated: bool = False


@dataclass
class CopyStats:
    """Bytes moved between host and device buffers by one executable (or a whole plan), counted per copy.

    `copies` counts every host memcpy and every device copy command made; `avoided` counts the ones the plain
    staging path (host -> staging -> device, device -> staging -> host) would have made and the memory bridge
    skipped (direct writes into host-visible device memory, imported host pointers, leased output views)."""

    runs: int = 0
    copies: int = 0
    bytes_copied: int = 0
    avoided: int = 0
    bytes_avoided: int = 0

    def __add__(self, other: CopyStats) -> CopyStats:
        return CopyStats(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    def count(self, copies: int, nbytes: int, avoided: int = 0) -> None:
        """Record `copies` copies of `nbytes` bytes each, and `avoided` skipped copies of the same size."""
        self.copies += copies
        self.bytes_copied += copies * nbytes
        self.avoided += avoided
        self.bytes_avoided += avoided * nbytes


NO_TIMINGS: list[StepTiming] = []


class Executable(ABC):
    """A partition made ready on one processor: weights uploaded, pipelines or sessions built once."""

    @abstractmethod
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once, blocking (with the GIL released while the device works); returns the partition outputs.

        Outputs may be views of backend memory (zero-copy), but never of memory a later run overwrites: a backend
        reuses an output buffer only once no array derived from it is alive."""

    def timings(self) -> list[StepTiming]:
        """Timings of the last run, if the backend measures them (GPU timestamps, simulated NPU clock); callers
        must not modify the list."""
        return NO_TIMINGS

    def copy_stats(self) -> CopyStats:
        """Copies made and avoided since prepare (backends that move no data between memories report zeros)."""
        return CopyStats()

    def keep(self, name: str, output: str) -> bool:
        """Keep input `name` on the processor between runs, as the value output `output` (same dtype and shape)
        took, updated in place; False where this backend cannot (the plan then holds it in host memory). Once kept,
        the value starts as zeros, a run fed `name` sets it first, and `output` is no longer returned (`kept`)."""
        return False

    def kept(self, name: str) -> np.ndarray:
        """A copy of the value kept for input `name` (see `keep`)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release device resources held by this executable."""


class Backend(ABC):
    """One processor. Subclasses are constructed by `open` and raise BackendUnavailable when they cannot start."""

    device: str  # "cpu" | "gpu" | "npu"
    simulated: bool = False

    @classmethod
    @abstractmethod
    def open(cls, options: LoadOptions) -> Backend:
        """Start the processor (options come from runtime_min.load keyword arguments)."""

    @abstractmethod
    def prepare(self, partition: Partition, bundle: Bundle) -> Executable:
        """Load one partition (its artifact names the bundle files it reads; weights come from bundle.store)."""

    def describe(self) -> str:
        """One line naming the processor actually used (for logs and traces)."""
        return self.device

    def close(self) -> None:
        """Release the device."""
