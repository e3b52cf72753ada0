"""Run a plan's steps. A plan on one processor runs in the caller's thread (nothing to overlap, no thread hop);
otherwise one worker thread per processor follows its step list in order and waits on one event per partition of
another processor. Tensors go through a per-frame table, each written once. Frames are queued to every worker in
the same order, so frame i+1 can occupy one processor while frame i is still on another."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from runtime_min.backends.base import Executable, StepTiming
from runtime_min.errors import BundleError, DeviceFailure, RuntimeMinError
from runtime_min.manifest import Bundle, Partition

Entry = tuple[Partition, tuple[str, ...]]  # a partition and the partitions of other workers it waits for


@dataclass
class Step:
    """One partition made ready on the processor that will run it."""

    partition: Partition
    processor: str  # the schedule's processor: the worker that runs this step
    device: str  # where it actually runs (the CPU when its processor fell back)
    executable: Executable
    waits: tuple[str, ...] = ()  # partitions of other workers that must finish first

    def __post_init__(self) -> None:
        self.id = self.partition.id
        self.input_names = [spec.name for spec in self.partition.inputs]
        self.kept: set[str] = set()  # inputs its executable keeps (runtime_min.state): passed only when fed


@dataclass(slots=True)
class StepRecord:
    """When one step of one frame ran (perf_counter_ns), and what its backend measured or simulated inside it."""

    step: Step
    start_ns: int
    end_ns: int
    timings: list[StepTiming]


class Frame:
    """One pass of the feeds through every step: the tensor table, the step records, the first error."""

    def __init__(
        self, index: int, feeds: dict[str, np.ndarray], partitions: list[str], workers: int, done=None
    ) -> None:
        self.index, self.done = index, done  # done(frame): called once every worker is through with it
        self.values: dict[str, np.ndarray] = dict(feeds)
        self.records: dict[str, StepRecord] = {}
        self.error: BaseException | None = None
        self.submitted_ns = time.perf_counter_ns()
        threaded = workers > 1  # an inline frame (one worker, or none) is done when submit returns: no sync needed
        self.events = {pid: threading.Event() for pid in partitions} if threaded else {}
        self.finished = threading.Event() if threaded else None
        self._pending = workers
        self._lock = threading.Lock() if threaded else None

    def fail(self, error: BaseException) -> None:
        """Keep the first error and release every worker waiting on this frame."""
        if self._lock is None:
            self.error = self.error or error
            return
        with self._lock:
            if self.error is None:
                self.error = error
        for event in self.events.values():
            event.set()

    def worker_done(self) -> None:
        if self._lock is not None:
            with self._lock:
                self._pending -= 1
                if self._pending:
                    return
            self.finished.set()
        if self.done is not None:
            self.done(self)

    def wait(self) -> None:
        if self.finished is not None:
            self.finished.wait()

    def result(self) -> Frame:
        """This frame once every worker is done with it; re-raises the frame's error."""
        self.wait()
        if self.error is not None:
            raise self.error
        return self


class Executor:
    """Runs frames: inline for one worker, else on worker threads started on first use and stopped by `close`."""

    def __init__(self, workers: dict[str, list[Step]]) -> None:
        self.workers = workers
        self.partitions = [step.id for steps in workers.values() for step in steps]
        self.broken: DeviceFailure | None = None  # set by the first processor failure; the plan must be reloaded
        self.closed = False
        self._queues: dict[str, queue.SimpleQueue[Frame | None]] = {}
        self._threads: list[threading.Thread] = []
        self._submit = threading.Lock()  # every worker sees frames in the same order; inline runs one at a time
        self._count = 0
        self.inline = len(workers) <= 1

    def submit(self, feeds: dict[str, np.ndarray], done=None) -> Frame:
        """Queue one frame on every worker (inline: run it now); `Frame.result()` waits for it, `done(frame)` is
        called (on the last worker's thread) when it is finished."""
        with self._submit:
            if self.closed:
                raise RuntimeMinError("this plan was closed; load it again with runtime_min.load()")
            if self.broken is not None:
                raise DeviceFailure(str(self.broken))
            frame = Frame(self._count, feeds, self.partitions, len(self.workers), done)
            self._count += 1
            if self.inline:
                self._work(frame, next(iter(self.workers.values()), []))
                return frame
            if not self._threads:
                self._start()
            for q in self._queues.values():
                q.put(frame)
        return frame

    def close(self) -> None:
        """Let queued frames finish, then stop the workers; later submissions are refused."""
        with self._submit:
            self.closed = True
            for q in self._queues.values():
                q.put(None)
            for thread in self._threads:
                thread.join()
            self._queues, self._threads = {}, []

    def _start(self) -> None:
        for processor, steps in self.workers.items():
            q: queue.SimpleQueue[Frame | None] = queue.SimpleQueue()
            thread = threading.Thread(target=self._loop, args=(q, steps), name=f"runtime_min:{processor}", daemon=True)
            self._queues[processor] = q
            self._threads.append(thread)
            thread.start()

    def _loop(self, q: queue.SimpleQueue[Frame | None], steps: list[Step]) -> None:
        while (frame := q.get()) is not None:
            self._work(frame, steps)

    def _work(self, frame: Frame, steps: list[Step]) -> None:
        try:
            self._run_steps(frame, steps)
        except BaseException as exc:  # fail the frame; a dead worker would hang every later run
            frame.fail(exc)
        finally:
            frame.worker_done()

    def _run_steps(self, frame: Frame, steps: list[Step]) -> None:
        values, events = frame.values, frame.events
        for step in steps:
            for pid in step.waits:
                events[pid].wait()
            if frame.error is None and self.broken is not None:
                frame.fail(DeviceFailure(str(self.broken)))
            if frame.error is not None:
                return
            feeds = {name: values[name] for name in step.input_names}
            feeds.update((name, values[name]) for name in step.kept if name in values)
            start = time.perf_counter_ns()
            try:
                outputs = step.executable.run(feeds)
                timings = step.executable.timings()
            except BaseException as exc:  # every failure must reach the caller, never hang it
                frame.fail(self._failure(step, exc))
                return
            frame.records[step.id] = StepRecord(step, start, time.perf_counter_ns(), timings)
            values.update(outputs)
            if events:
                events[step.id].set()

    def _failure(self, step: Step, exc: BaseException) -> BaseException:
        """Errors of our own pass through; anything else from a backend is a processor failure."""
        if not isinstance(exc, Exception) or (isinstance(exc, RuntimeMinError) and not isinstance(exc, DeviceFailure)):
            return exc
        detail = str(exc).splitlines()[0].rstrip(".;") if str(exc) else "no message"
        where = step.device if step.device == step.processor else f"{step.device} (running {step.processor}'s fallback)"
        failure = DeviceFailure(
            f"{where} failed running partition {step.id} ({type(exc).__name__}: {detail}); "
            "load the plan again with runtime_min.load() to use it"
        )
        failure.__cause__ = exc
        self.broken = self.broken or failure
        return failure


def worker_lists(bundle: Bundle) -> dict[str, list[Entry]]:
    """Processor -> its partitions in step order, each with the partitions of other processors it waits for.

    Waits are the schedule's explicit ones plus every cross-processor producer. Refuses schedules whose
    workers could wait on each other forever, or that read a tensor nobody writes."""
    partitions = {p.id: p for p in bundle.partitions}
    listed = [pid for entries in bundle.steps.values() for pid, _ in entries]
    if sorted(listed) != sorted(partitions) or len(set(listed)) != len(listed):
        raise _bad_schedule("its steps do not list every partition exactly once")
    processor_of = {pid: proc for proc, entries in bundle.steps.items() for pid, _ in entries}
    wrong = [pid for pid, proc in processor_of.items() if partitions[pid].device != proc]
    if wrong:
        raise _bad_schedule(f"partition {wrong[0]} is listed under another processor than its own")
    writer = _writers(bundle)
    workers: dict[str, list[Entry]] = {}
    for processor, entries in bundle.steps.items():
        done: set[str] = set()
        workers[processor] = []
        for pid, waits in entries:
            part = partitions[pid]
            unknown = set(waits) - set(partitions)
            if unknown:
                raise _bad_schedule(f"partition {pid} waits for unknown partition {sorted(unknown)[0]}")
            needs = {writer[s.name] for s in part.inputs if s.name in writer} | set(waits)
            late = sorted(s for s in needs if processor_of[s] == processor and s not in done)
            if late:
                raise _bad_schedule(f"partition {pid} runs before {late[0]}, which it needs")
            workers[processor].append((part, tuple(sorted(s for s in needs if processor_of[s] != processor))))
            done.add(pid)
    _check_acyclic(workers)
    return {proc: entries for proc, entries in workers.items() if entries}


def _writers(bundle: Bundle) -> dict[str, str]:
    """Tensor name -> the partition writing it; every partition input must be a plan input or written once."""
    writer = {spec.name: part.id for part in bundle.partitions for spec in part.outputs}
    plan_inputs = {s.name for s in bundle.inputs}
    for part in bundle.partitions:
        missing = [s.name for s in part.inputs if s.name not in writer and s.name not in plan_inputs]
        if missing:
            raise _bad_schedule(f"partition {part.id} reads {missing[0]!r}, which no partition writes")
    return writer


def _check_acyclic(workers: dict[str, list[Entry]]) -> None:
    """Each step depends on the one before it on its worker and on its waits; that graph must have no cycle."""
    deps: dict[str, set[str]] = {}
    for entries in workers.values():
        previous: list[str] = []
        for part, waits in entries:
            deps[part.id] = set(waits) | set(previous)
            previous = [part.id]
    ready = sorted(pid for pid, d in deps.items() if not d)
    seen = 0
    while ready:
        pid = ready.pop()
        seen += 1
        for other, d in deps.items():
            if pid in d:
                d.discard(pid)
                if not d:
                    ready.append(other)
    if seen != len(deps):
        stuck = sorted(pid for pid, d in deps.items() if d)
        raise _bad_schedule(f"its step order makes processors wait on each other forever (at {stuck[0]})")


def _bad_schedule(problem: str) -> BundleError:
    return BundleError(f"schedule.json is not runnable: {problem}; recompile the model")
