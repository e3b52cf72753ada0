"""A loaded plan: its processors opened (or their partitions moved to CPU fallbacks), its partitions prepared, ready
to run feeds. Thread-safe: any number of threads may call `run` on one plan; frames are serialised per processor,
and `close` waits for the runs in flight before it releases anything."""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from runtime_min.backends import Backend, open_backend
from runtime_min.backends.base import CopyStats
from runtime_min.errors import BackendUnavailable, BundleError, InputError, RuntimeMinError, RuntimeMinWarning
from runtime_min.executor import Entry, Executor, Frame, Step, worker_lists
from runtime_min.manifest import Bundle, TensorSpec
from runtime_min.options import LoadOptions
from runtime_min.stream import assembly_line, check_depth
from runtime_min.trace import step_times, write_trace


class Plan:
    def __init__(self, bundle: Bundle, options: LoadOptions) -> None:
        self.bundle = bundle
        self.path = bundle.root
        self.manifest = bundle.manifest
        self.schedule = bundle.schedule
        self.inputs: list[TensorSpec] = bundle.inputs
        self.outputs: list[TensorSpec] = bundle.outputs
        # one partition: onnxruntime may spin its threads between runs; several: spinning threads of one session
        # would steal the cores another session or a GPU worker needs, so they sleep instead
        self.options = replace(options, cpu_spinning=len(bundle.partitions) == 1)
        self.backends: dict[str, Backend] = {}
        self.fallbacks: dict[str, str] = {}  # processor -> why its partitions run on the CPU
        self.steps: list[Step] = []
        self._executor: Executor | None = None
        self._last: Frame | None = None
        self._expected = {s.name: (np.dtype(s.dtype), s.shape) for s in self.inputs}
        copied = set(bundle.constants) | set(self._expected)
        self._written = [s.name for s in self.outputs if s.name not in copied]
        self._copied = [s for s in self.outputs if s.name in copied]
        lists = worker_lists(bundle)
        self.processors = [p for p in bundle.manifest.get("processors", []) if p in lists]
        self.processors += sorted(set(lists) - set(self.processors))  # worker (and trace track) order
        workers: dict[str, list[Step]] = {}
        try:
            for processor in self.processors:
                workers[processor] = self._prepare_processor(processor, lists[processor])
                self.steps += workers[processor]
        except BaseException:
            self.close()
            raise
        order = {p.id: i for i, p in enumerate(bundle.partitions)}
        self.steps.sort(key=lambda s: order[s.id])  # schedule order
        self._executor = Executor(workers)
        self._stop = weakref.finalize(self, self._executor.close)

    # --- loading -------------------------------------------------------------------------------------------------

    def _prepare_processor(self, processor: str, entries: list[Entry]) -> list[Step]:
        """Prepare every partition of one processor; if it cannot start or load them, use their CPU fallbacks."""
        if processor != "cpu":
            try:
                return self._prepare_on(processor, processor, entries)
            except (BundleError, InputError):
                raise  # a broken bundle is not a missing processor
            except Exception as exc:  # any other load failure of a non-CPU processor means fallback
                self._fall_back(processor, exc)
        return self._prepare_on(processor, "cpu", entries)

    def _prepare_on(self, processor: str, device: str, entries: list[Entry]) -> list[Step]:
        backend = self._backend(device)
        steps: list[Step] = []
        try:
            for part, waits in entries:
                view = part if device == part.device else self._fallback_view(part, processor)
                steps.append(Step(view, processor, device, backend.prepare(view, self.bundle), waits))
        except BaseException:
            for step in steps:
                step.executable.close()
            raise
        return steps

    def _backend(self, device: str) -> Backend:
        if device not in self.backends:
            if device in self.options.disable and device != "cpu":
                raise BackendUnavailable("disabled by the load option disable (or RAGC_DISABLE)")
            self.backends[device] = open_backend(device, self.options)
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
            stacklevel=6,  # the caller of runtime_min.load
        )

    def _fallback_view(self, part, processor: str):
        if part.fallback is None:
            raise BundleError(
                f"partition {part.id} needs {processor} ({self.fallbacks[processor]}) and the bundle has no CPU "
                "fallback for it; recompile the model"
            )
        return part.on_cpu()

    # --- running -------------------------------------------------------------------------------------------------

    def check_feeds(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The feeds as the plan reads them: names, dtypes and shapes checked, byte order made native."""
        expected = self._expected
        if feeds.keys() != expected.keys():
            unknown, missing = sorted(set(feeds) - set(expected)), sorted(set(expected) - set(feeds))
            raise InputError(
                f"inputs do not match the plan: missing {missing or 'none'}, unexpected {unknown or 'none'}; "
                f"the plan takes {', '.join(f'{s.name} {s.dtype}{list(s.shape)}' for s in self.inputs)}"
            )
        checked = {}
        for name, value in feeds.items():
            dtype, shape = expected[name]
            array = value if type(value) is np.ndarray else np.asarray(value)
            if array.dtype != dtype:
                if array.dtype.newbyteorder("=") != dtype.newbyteorder("="):
                    raise InputError(
                        f"input {name!r} has dtype {array.dtype.name}, the plan expects {dtype.name}; "
                        f"convert it with .astype(np.{dtype.name})"
                    )
                array = array.astype(dtype)  # the same values in this machine's byte order
            if array.shape != shape:
                raise InputError(
                    f"input {name!r} has shape {list(array.shape)}, the plan expects {list(shape)}; "
                    "recompile with --shape to change it"
                )
            checked[name] = array if array.flags.c_contiguous else np.ascontiguousarray(array)
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

    def _stream(self, executor: Executor, frames, depth: int, trace) -> Iterator[dict[str, np.ndarray]]:
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
        """The plan outputs of a finished frame, which then lets go of its tensors and keeps only its timings. A
        constant or a plan input passed through is copied: the caller never gets the store's or its own array."""
        values = frame.values
        outputs = {name: values[name] for name in self._written}
        for spec in self._copied:
            outputs[spec.name] = self._copy_of(spec.name, values)
        frame.values = {}
        self._last = frame
        return outputs if not self._copied else {s.name: outputs[s.name] for s in self.outputs}

    def _copy_of(self, name: str, values: dict[str, np.ndarray]) -> np.ndarray:
        constant = self.bundle.constants.get(name)
        return (values[name] if constant is None else self.bundle.store.tensor(constant, "constant")).copy()

    def _live(self) -> Executor:
        if self._executor is None:
            raise RuntimeMinError("this plan was closed; load it again with runtime_min.load()")
        return self._executor

    def last_step_times(self) -> list[dict[str, Any]]:
        """Per partition of the last finished run (schedule order): {partition, device, start_ms, duration_ms}, where
        device is the processor that actually ran it and start_ms counts from the run's start."""
        if self._last is None:
            return []
        return step_times(self._last, [p.id for p in self.bundle.partitions])

    def copy_stats(self) -> CopyStats:
        """Host <-> device copies made and avoided since load, summed over every partition (`runs` counts partition
        runs); the memory bridge (load option zero_copy) is what avoids them."""
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
        """Wait for runs in flight, then release every processor; later runs raise RuntimeMinError."""
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
