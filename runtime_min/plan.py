"""A loaded plan: its processors opened (or their partitions moved to CPU fallbacks), its partitions prepared, ready
to run feeds."""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from runtime_min.backends import Backend, open_backend
from runtime_min.backends.base import CopyStats
from runtime_min.errors import BackendUnavailable, BundleError, InputError, RuntimeMinError, RuntimeMinWarning
from runtime_min.executor import Entry, Executor, Frame, Step, worker_lists
from runtime_min.generate import generate as _generate
from runtime_min.manifest import Bundle, TensorSpec
from runtime_min.options import LoadOptions
from runtime_min.state import KeptState
from runtime_min.stream import assembly_line, check_depth
from runtime_min.trace import step_times, write_trace

Arrays = dict[str, np.ndarray]  # tensor name -> array: feeds, outputs, preallocated outputs
Names = Iterable[str] | None
PathLike = str | Path | None


class Plan:
    """A plan made ready by `runtime_min.load`: `run`, `submit` and `stream` feeds through it; `close` (or a `with`
    block) releases its processors.

    Thread safety: any number of threads may call `run`, `submit` and `stream` on one plan at once. Each call is one
    frame; frames are queued to every processor in the order they were submitted and each processor runs them one
    at a time, so results never depend on timing. Outputs belong to the caller (GPU outputs may be views of mapped
    memory that are never overwritten while referenced); an `out` array must not be given to two runs at once.
    `last_step_times` describes whichever run finished last. `close` waits for the runs in flight."""

    def __init__(self, bundle: Bundle, options: LoadOptions) -> None:
        self.bundle, self.path, self.manifest, self.schedule = bundle, bundle.root, bundle.manifest, bundle.schedule
        self.inputs: list[TensorSpec] = bundle.inputs  # name, dtype, shape of each feed
        self.outputs: list[TensorSpec] = bundle.outputs
        # one partition: onnxruntime may spin its threads between runs; several: spinning threads of one session
        # would steal the cores another session or a GPU worker needs, so they sleep instead
        self.options = replace(options, cpu_spinning=len(bundle.partitions) == 1)
        self.backends: dict[str, Backend] = {}
        self.fallbacks: dict[str, str] = {}  # processor -> why its partitions run on the CPU
        self.steps: list[Step] = []
        self._executor: Executor | None = None
        self._last: Frame | None = None
        self._state: KeptState | None = None
        self._expected = {s.name: (np.dtype(s.dtype), s.shape) for s in self.inputs}
        self._names = [s.name for s in self.outputs]
        self._copied = {s.name for s in self.outputs} & (set(bundle.constants) | set(self._expected))
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
        if (backend := self.backends.pop(processor, None)) is not None:
            backend.close()
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not isinstance(exc, RuntimeMinError):
            reason = f"{type(exc).__name__}: {reason}"
        self.fallbacks[processor] = reason
        message = f"runtime_min: {processor} unavailable ({reason}); its partitions run from their CPU fallbacks"
        warnings.warn(message, RuntimeMinWarning, stacklevel=6)  # stacklevel: the caller of runtime_min.load

    def _fallback_view(self, part, processor: str):
        if part.fallback is None:
            raise BundleError(
                f"partition {part.id} needs {processor} ({self.fallbacks[processor]}) and the bundle has no CPU "
                "fallback for it; recompile the model"
            )
        return part.on_cpu()

    # --- running -------------------------------------------------------------------------------------------------
    generate = _generate  # plan.generate(input_ids, max_new_tokens, *, temperature, top_k, seed, stop): LLM tokens

    def keep_state(self, pairs: dict[str, str]) -> dict[str, str]:
        """From now on each input in `pairs` takes its paired output's value of the last run (zeros at first) unless
        fed: a KV cache, a recurrent state. Where the one partition reading it updates it in place (a ScatterND) it
        stays in that processor's memory, else the plan holds it in host memory. A kept output is returned only when
        named; such a plan runs through `run` only. Returns where each input is kept: "gpu", "cpu" or "host"."""
        self._live()
        if self._state is not None and pairs != self._state.pairs:
            raise InputError(f"this plan already keeps {sorted(self._state.pairs)}; load it again to keep others")
        self._state = self._state or KeptState(self.inputs, self.outputs, self.steps, pairs)
        return dict(self._state.where)

    def check_feeds(self, feeds: Arrays) -> Arrays:
        """The feeds as the plan reads them: names, dtypes and shapes checked, byte order made native."""
        expected, optional = self._expected, self._state.optional if self._state else ()
        unknown, missing = set(feeds) - set(expected), set(expected) - set(feeds) - set(optional)
        if unknown or missing:
            unknown, missing = sorted(unknown), sorted(missing)
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

    def run(self, feeds: Arrays, *, outputs: Names = None, out: Arrays | None = None, trace: PathLike = None) -> Arrays:
        """Run once: dict of numpy arrays in, dict of numpy arrays out (same inputs give the same bits). `outputs`
        names the outputs to return (default: all, in the plan's order; every partition still runs); `out` maps
        output names to preallocated arrays of their dtype and shape, filled in place and returned. `trace` names a
        Chrome/Perfetto JSON file to write the run's timeline to."""
        names, state = self._select(outputs, out), self._state
        checked = self.check_feeds(feeds)
        frame = self._live().submit(state.feeds(checked) if state else checked).result()
        if state:
            state.after(frame.values, names)
        result = self._finish(frame, names, out)
        if trace is not None:
            write_trace(trace, [frame], self.tracks())
        return result

    def submit(self, feeds: Arrays, *, outputs: Names = None, out: Arrays | None = None) -> Future[Arrays]:
        """Start one run and return at once: a `concurrent.futures.Future` of what `run` would return (or of its
        error). Feeds are checked now; the run is queued behind the runs already submitted."""
        self._one_frame_at_a_time("submit")
        names, future = self._select(outputs, out), Future()
        future.set_running_or_notify_cancel()

        def done(frame: Frame) -> None:
            try:
                future.set_result(self._finish(frame.result(), names, out))
            except BaseException as exc:  # into the future, never into the worker thread
                future.set_exception(exc)

        self._live().submit(self.check_feeds(feeds), done)
        return future

    def _one_frame_at_a_time(self, call: str) -> None:
        if self._state:
            raise InputError(f"this plan keeps state (keep_state): run it with run(), not {call}()")

    def _select(self, outputs: Names, out: Arrays | None) -> list[str]:
        """The outputs a run returns: known names, and `out` arrays that are writable and of their dtype and shape."""
        if isinstance(outputs, str) or not isinstance(out, (dict, type(None))):
            raise InputError("give outputs as a list of output names and out as a dict of name -> numpy array")
        names = self._names if outputs is None else list(dict.fromkeys(outputs))
        specs = {s.name: s for s in self.outputs}
        unknown = [n for n in [*names, *(out or {})] if n not in specs or n not in names]
        if unknown:
            raise InputError(f"output {unknown[0]!r} is not among the outputs asked for; the plan has {self._names}")
        for name, array in (out or {}).items():
            spec = specs[name]
            fits = isinstance(array, np.ndarray) and (array.dtype, array.shape) == (np.dtype(spec.dtype), spec.shape)
            if not (fits and array.flags.writeable):
                raise InputError(f"out[{name!r}] must be a writable numpy array of {spec.dtype}{list(spec.shape)}")
        return names

    def stream(self, frames: Iterable[Arrays], depth: int = 2, *, trace: PathLike = None) -> Iterator[Arrays]:
        """Assembly line: outputs of each feed dict in input order, with up to `depth` frames in flight so that
        different frames occupy different processors at once. `trace` is written when the stream ends."""
        self._one_frame_at_a_time("stream")
        return self._stream(self._live(), frames, check_depth(depth), trace)

    def _stream(self, executor: Executor, frames, depth: int, trace) -> Iterator[Arrays]:
        done: list[Frame] = []

        def finish(frame: Frame) -> Arrays:
            if trace is not None:
                done.append(frame)
            return self._finish(frame)

        try:
            yield from assembly_line(executor, frames, depth, self.check_feeds, finish)
        finally:
            if trace is not None:
                write_trace(trace, done, self.tracks())

    def _finish(self, frame: Frame, names: list[str] | None = None, out: Arrays | None = None) -> Arrays:
        """The outputs `names` of a finished frame (into the `out` arrays given), which then lets go of its tensors
        and keeps only its timings. A constant or a plan input passed through is copied: the caller never gets the
        store's or its own array."""
        values, result = frame.values, {}
        for name in self._names if names is None else names:
            result[name] = self._copy_of(name, values) if name in self._copied else values[name]
            if out and name in out:
                np.copyto(out[name], result[name])
                result[name] = out[name]
        frame.values = {}
        self._last = frame
        return result

    def _copy_of(self, name: str, values: Arrays) -> np.ndarray:
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
