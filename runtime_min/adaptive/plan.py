"""A plan of several variants: every variant prepared at load, one picked per run (or per frame of a stream) by the
bundle's rule over the latest signals; switching is choosing another prepared plan, never a reload."""

from __future__ import annotations

import json
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from runtime_min.adaptive.rule import Choice, Chooser, Rule
from runtime_min.backends.base import CopyStats
from runtime_min.errors import InputError, RuntimeMinError
from runtime_min.plan import Arrays, Names, PathLike, Plan
from runtime_min.stream import check_depth


class AdaptivePlan:
    """Runs like `Plan` (run, submit, stream, close); `last_variant()` says which variant ran, why, and on which
    signals. A plan loaded with `variant=` is pinned to that one. `plans` holds every variant's prepared Plan."""

    def __init__(self, plans: dict[str, Plan], rule: Rule, signals: Any, pinned: str | None = None) -> None:
        self.plans, self.rule, self.pinned = plans, rule, pinned
        first = plans[pinned or rule.default]
        self.path, self.manifest, self.inputs, self.outputs = first.path, first.manifest, first.inputs, first.outputs
        self.variants = list(plans)
        self._signals = signals
        weakref.finalize(self, signals.close)  # a plan dropped without close() stops its sampler too
        self._chooser = Chooser(rule)
        self._lock = threading.Lock()
        self._runs = 0
        self._last: tuple[Choice, int] | None = None
        self._shown = first
        used = {p for plan in plans.values() for p in plan.processors} - {"cpu"}
        # processors present: known at load, where a processor that did not open runs its partitions on the CPU
        self.present = {f"{p}_present": float(all(p not in plan.fallbacks for plan in plans.values())) for p in used}

    def __getattr__(self, name: str) -> Any:
        """What a Plan has and this class does not (processors, fallbacks, schedule, ...): the last run variant's (the
        default's before the first run)."""
        if name.startswith("__") or "_shown" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self._shown, name)

    def use_signals(self, source: Any) -> None:
        """Read signals from `source` (anything with `latest(run)` and `close()`) from now on, e.g. a ReplaySignals."""
        with self._lock:
            self._signals.close()
            self._signals = source.start() if hasattr(source, "start") else source

    def _choose(self) -> tuple[Choice, int]:
        with self._lock:
            run, self._runs = self._runs, self._runs + 1
            if self.pinned is not None:
                return Choice(self.pinned, "pinned by load(variant=...)", {}), run
            return self._chooser.pick(self.present | self._signals.latest(run)), run

    def _observe(self, choice: Choice, run: int, ms: float) -> None:
        with self._lock:
            if self.pinned is None:
                self._chooser.observe(choice, ms)
            self._last = (choice, run)
            self._shown = self.plans[choice.variant]

    def run(self, feeds: Arrays, *, outputs: Names = None, out: Arrays | None = None, trace: PathLike = None) -> Arrays:
        """As `Plan.run`, on the variant the rule picks now; a trace also names the variant, the reason and signals."""
        choice, run = self._choose()
        start = time.perf_counter()
        result = self.plans[choice.variant].run(feeds, outputs=outputs, out=out, trace=trace)
        self._observe(choice, run, (time.perf_counter() - start) * 1e3)
        if trace is not None:
            _mark_trace(Path(trace), choice)
        return result

    def submit(self, feeds: Arrays, *, outputs: Names = None, out: Arrays | None = None) -> Future[Arrays]:
        """As `Plan.submit`, on the variant the rule picks now."""
        choice, run = self._choose()
        start = time.perf_counter()
        future = self.plans[choice.variant].submit(feeds, outputs=outputs, out=out)
        future.add_done_callback(lambda _: self._observe(choice, run, (time.perf_counter() - start) * 1e3))
        return future

    def stream(self, frames: Iterable[Arrays], depth: int = 2, *, trace: PathLike = None) -> Iterator[Arrays]:
        """As `Plan.stream`; each frame runs whole on the variant picked when it is submitted (switches fall between
        frames). Traces of streams are written by pinned plans only."""
        if trace is not None and self.pinned is None:
            raise InputError("an adaptive stream writes no trace; load the bundle with variant=NAME to trace a stream")
        return self._stream(frames, check_depth(depth))

    def _stream(self, frames: Iterable[Arrays], depth: int) -> Iterator[Arrays]:
        in_flight: deque[tuple[Any, Choice, int, float]] = deque()

        def finish() -> Arrays:
            future, choice, run, start = in_flight.popleft()
            result = future.result()
            self._observe(choice, run, (time.perf_counter() - start) * 1e3)
            return result

        try:
            for feeds in frames:
                choice, run = self._choose()
                start = time.perf_counter()
                in_flight.append((self.plans[choice.variant].submit(feeds), choice, run, start))
                if len(in_flight) >= depth:
                    yield finish()
            while in_flight:
                yield finish()
        finally:
            for future, *_ in in_flight:
                future.exception()

    def last_variant(self) -> dict[str, Any] | None:
        """The last finished run's {variant, reason, signals, probe, run}, or None before the first."""
        if self._last is None:
            return None
        choice, run = self._last
        return {
            "variant": choice.variant,
            "reason": choice.reason,
            "signals": dict(choice.signals),
            "probe": choice.probe,
            "run": run,
        }

    def last_step_times(self) -> list[dict[str, Any]]:
        return self._shown.last_step_times()

    def copy_stats(self) -> CopyStats:
        """Host <-> device copies made and avoided since load, over every variant."""
        return sum((plan.copy_stats() for plan in self.plans.values()), CopyStats())

    def tracks(self) -> dict[str, str]:
        return self._shown.tracks()

    def close(self) -> None:
        """Stop the signal sampler and close every variant."""
        self._signals.close()
        for plan in self.plans.values():
            plan.close()

    def __enter__(self) -> AdaptivePlan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _mark_trace(path: Path, choice: Choice) -> None:
    """Add the choice to a written trace: a global instant event at its start, and in otherData."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RuntimeMinError(f"cannot add the variant to the trace {str(path)!r} ({exc}); check the folder") from None
    args = {"variant": choice.variant, "reason": choice.reason, "signals": choice.signals, "probe": choice.probe}
    doc["traceEvents"].append(
        {"ph": "i", "s": "g", "pid": 1, "tid": 0, "ts": 0, "name": f"variant {choice.variant}", "args": args}
    )
    doc["otherData"]["variant"] = args
    path.write_text(json.dumps(doc, sort_keys=True, indent=1) + "\n")
