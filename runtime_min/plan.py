"""A loaded plan: its processors opened (or their partitions moved to CPU fallbacks), its partitions prepared, one
worker per processor ready to run feeds."""

from __future__ import annotations

import os
import warnings
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime_min.backends import Backend, open_backend
from runtime_min.backends.base import CopyStats
from runtime_min.errors import BackendUnavailable, BundleError, InputError, RuntimeMinError, RuntimeMinWarning
from runtime_min.executor import Entry, Executor, Frame, Step, worker_lists
from runtime_min.stream import assembly_line, check_depth
from runtime_min.trace import step_times, write_trace

DISABLE_ENV = "RAGC_DISABLE"  # comma list of processors whose partitions must run from their CPU fallbacks


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int, ...]

    @classmethod
    def from_json(cls, spec: dict[str, Any]) -> TensorSpec:
        return cls(spec["name"], spec["dtype"], tuple(spec["shape"]))


class Plan:
    def __init__(self, root: Path, manifest: dict[str, Any], schedule: dict[str, Any], options: dict[str, Any]):
        self.path = root
        self.manifest = manifest
        self.schedule = schedule
        self.inputs = [TensorSpec.from_json(s) for s in schedule["inputs"]]
        self.outputs = [TensorSpec.from_json(s) for s in schedule["outputs"]]
        self.backends: dict[str, Backend] = {}
        self.fallbacks: dict[str, str] = {}  # processor -> why its partitions run on the CPU
        # One partition: onnxruntime may spin its threads between runs. Several: spinning threads of one session
        # would steal the cores another session or a GPU worker needs, so they sleep instead.
        self._options = {"cpu_spinning": len(schedule["partitions"]) == 1, **options}
        self.steps: list[Step] = []
        self._executor: Executor | None = None
        self._last: Frame | None = None
        lists = worker_lists(schedule)
        named = [p for p in schedule.get("processors", []) if p in lists]
        self.processors = named + sorted(set(lists) - set(named))  # worker (and trace track) order
        workers: dict[str, list[Step]] = {}
        try:
            for processor in self.processors:
                workers[processor] = self._prepare_processor(processor, lists[processor])
                self.steps += workers[processor]
        except BaseException:
            self.close()
            raise
        by_id = {step.id: step for step in self.steps}
        self.steps = [by_id[p["id"]] for p in schedule["partitions"]]  # schedule order
        self._executor = Executor(workers)
        self._stop = weakref.finalize(self, self._executor.close)

    # --- loading -------------------------------------------------------------------------------------------------

    def _prepare_processor(self, processor: str, entries: list[Entry]) -> list[Step]:
        """Prepare every partition of one processor; if it cannot start or load them, use their CPU fallbacks."""
        if processor != "cpu":
            try:
                return self._prepare_on(processor, processor, entries)
            except Exception as exc:  # any load failure of a non-CPU processor means fallback
                self._fall_back(processor, exc)
        return self._prepare_on(processor, "cpu", entries)

    def _prepare_on(self, processor: str, device: str, entries: list[Entry]) -> list[Step]:
        backend = self._backend(device)
        steps: list[Step] = []
        try:
            for part, waits in entries:
                view = part if device == part["device"] else self._fallback_view(part, processor)
                steps.append(Step(part, processor, device, backend.prepare(view, self.path), waits))
        except BaseException:
            for step in steps:
                step.executable.close()
            raise
        return steps

    def _backend(self, device: str) -> Backend:
        if device not in self.backends:
            disabled = {d.strip() for d in os.environ.get(DISABLE_ENV, "").split(",") if d.strip()}
            if device in disabled and device != "cpu":
                raise BackendUnavailable(f"disabled by {DISABLE_ENV}")
            self.backends[device] = open_backend(device, self._options)
        return self.backends[device]

    def _fall_back(self, processor: str, exc: Exception) -> None:
        backend = self.backends.pop(processor, None)
        if backend is not None:
            backend.close()
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not isinstance(exc, RuntimeMinError):
            reason = f"{type(exc).__name__}: {reason}"
        self.fallbacks[processor] = reason
        warnings.warn(
            f"runtime_min: {processor} unavailable ({reason}); its partitions run from their CPU fallbacks",
            RuntimeMinWarning,
            stacklevel=5,  # the caller of runtime_min.load
        )

    def _fallback_view(self, part: dict[str, Any], processor: str) -> dict[str, Any]:
        if not part.get("fallback"):
            raise BundleError(
                f"partition {part['id']} needs {processor} ({self.fallbacks[processor]}) and the bundle has no CPU "
                "fallback for it; recompile the model"
            )
        return {**part, "artifact": part["fallback"], "device": "cpu"}

    # --- running -------------------------------------------------------------------------------------------------

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

    def run(self, feeds: dict[str, np.ndarray], *, trace: str | Path | None = None) -> dict[str, np.ndarray]:
        """Run once: dict of numpy arrays in, dict of numpy arrays out (same inputs give the same bits).
        `trace` names a Chrome/Perfetto JSON file to write the run's timeline to."""
        frame = self._live().run(self.check_feeds(feeds))
        outputs = self._finish(frame)
        if trace is not None:
            write_trace(trace, [frame], self.tracks())
        return outputs

    def stream(
        self, frames: Iterable[dict[str, np.ndarray]], depth: int = 2, *, trace: str | Path | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        """Assembly line: outputs of each feed dict in input order, with up to `depth` frames in flight so that
        different frames occupy different processors at once. `trace` is written when the stream ends."""
        return self._stream(self._live(), frames, check_depth(depth), trace)

    def _stream(
        self, executor: Executor, frames: Iterable[dict[str, np.ndarray]], depth: int, trace: str | Path | None
    ) -> Iterator[dict[str, np.ndarray]]:
        done: list[Frame] = []

        def finish(frame: Frame) -> dict[str, np.ndarray]:
            if trace is not None:
                done.append(frame)
            return self._finish(frame)

        try:
            yield from assembly_line(executor, frames, depth, self.check_feeds, finish)
        finally:
            if trace is not None:
                write_trace(trace, done, self.tracks())

    def _finish(self, frame: Frame) -> dict[str, np.ndarray]:
        """The plan outputs of a finished frame, which then lets go of its tensors and keeps only its timings."""
        outputs = {s.name: frame.values[s.name] for s in self.outputs}
        frame.values = {}
        self._last = frame
        return outputs

    def _live(self) -> Executor:
        if self._executor is None:
            raise RuntimeMinError("this plan was closed; load it again with runtime_min.load()")
        return self._executor

    def last_step_times(self) -> list[dict[str, Any]]:
        """Per partition of the last finished run (schedule order): {partition, device, start_ms, duration_ms}, where
        device is the processor that actually ran it and start_ms counts from the run's start."""
        if self._last is None:
            return []
        return step_times(self._last, [p["id"] for p in self.schedule["partitions"]])

    def copy_stats(self) -> CopyStats:
        """Host <-> device copies made and avoided since load, summed over every partition (`runs` counts partition
        runs); the memory bridge (RAGC_ZERO_COPY, load option zero_copy) is what avoids them."""
        return sum((step.executable.copy_stats() for step in self.steps), CopyStats())

    def tracks(self) -> dict[str, str]:
        """Processor -> the name of its trace track (what actually runs there)."""
        names = {}
        for processor in self.processors:
            device = "cpu" if processor in self.fallbacks else processor
            name = self.backends[device].describe() if device in self.backends else device
            name = name if name.startswith(device) else f"{device}: {name}"
            names[processor] = f"{processor} on the CPU fallback: {name}" if device != processor else name
        return names

    def close(self) -> None:
        if self._executor is not None:
            self._stop()
            self._executor = None
        for step in self.steps:
            step.executable.close()
        for backend in self.backends.values():
            backend.close()
        self.steps, self.backends = [], {}

    def __enter__(self) -> Plan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
