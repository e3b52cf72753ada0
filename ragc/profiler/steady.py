"""Timing in blocks, each labelled with the machine state it ran in, so that results come from one state.

Shared hosts switch between states for seconds to minutes at a time, and a state is not simply faster or slower: on
this project's 2-core CI machine one state runs thread-synchronising work (many small parallel ops) 2x slower and
streams memory 1.7x faster than the other. A profile taken in one state and models timed in the other disagree by
more than any cost model errs. So a probe is read after every block (two tiny onnxruntime sessions: a chain of small
1x1 convs, which synchronises threads, and a large elementwise add, which streams memory) and a block's state is the
mean of the readings before and after it (while timing on the GPU, a small GPU partition is read too: lavapipe's
speed changes by up to 1.4x with no change the CPU probes see). A block *counts* when its state is within TOLERANCE
of the reference state: the state the personality was profiled in (stored with it), or, for a new profile, the
median state of all its readings (the machine's usual state). Timers left without a counted block get more, round
robin, for at most PATIENCE times the planned time; a timer that never counted uses its block nearest the reference,
and the result says how many did.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from codegen.onnx_graph import graph_model
from ragc.profiler.oneop import make_session, random_feeds, timed_runs
from ragc.profiler.specs import binary, chained, conv

T = TypeVar("T")
State = dict[str, float]  # probe kind -> ms

TOLERANCE = {"sync": 0.08, "memory": 0.25, "gpu": 0.10}  # relative distance from the reference that still counts
PATIENCE = 0.5  # retakes stop after this share of the planned time ...
EXTRA_S = 5.0  # ... plus this much, so that short measurements can wait out one change of state
PROBE_RUNS = 7
CHUNK = 40  # graphs interleaved at once when profiling
WARM_S = 1.5  # of probe runs first: a machine that was idle runs thread handoffs slowly for its first second or
#              so of work (seen here: the sync probe at 0.92 ms, then 0.50 ms)


class BlockTimer:
    """Something timed in blocks (see time_interleaved): `block` times one; `states` holds each block's machine
    state and `kept` which blocks count, both filled by time_interleaved."""

    def __init__(self, label: str = "") -> None:
        self.label = label  # what progress bars call it
        self.states: list[State] = []
        self.kept: list[bool] = []

    def block(self, budget_s: float) -> None:
        raise NotImplementedError

    def walls(self) -> list[float]:
        """Each block's wall ms of one run."""
        raise NotImplementedError

    def spread_pct(self) -> float:
        """How repeatable the timing was: 100 * (slowest / fastest - 1) over the counted blocks' wall times."""
        walls = self.counted(self.walls())
        return 100.0 * (max(walls) / min(walls) - 1.0) if walls else 0.0

    def counted(self, blocks: Sequence[T]) -> list[T]:
        """The blocks that count (all of them when time_interleaved has not judged them)."""
        if len(self.kept) != len(blocks):
            return list(blocks)
        return [b for b, keep in zip(blocks, self.kept, strict=True) if keep]


class Probe:
    """Reads the machine's state: median ms of a sync-bound and a memory-bound onnxruntime session, and of the
    probes in `extra` (kind -> ms of one run; gpu_bench adds the GPU's while timing on it)."""

    def __init__(self) -> None:
        graphs = {"sync": chained(conv(64, 28, 64, 1), 16), "memory": binary("Add", (1, 4_000_000), (1, 4_000_000))}
        self._sessions = {k: (make_session(graph_model(g)), random_feeds(g)) for k, g in graphs.items()}
        self.extra: dict[str, Callable[[], float]] = {}

    def read(self) -> State:
        """Median ms of PROBE_RUNS runs of each session (after its warm-up runs) and of each extra probe."""
        state = {
            kind: statistics.median(timed_runs(session, feeds, 0.0, PROBE_RUNS))
            for kind, (session, feeds) in self._sessions.items()
        }
        return state | {kind: statistics.median(run() for _ in range(PROBE_RUNS)) for kind, run in self.extra.items()}

    def warm(self) -> None:
        until = time.monotonic() + WARM_S
        while time.monotonic() < until:
            self.read()


class Gate:
    """Judges block states against a reference state (given, or the median of the states seen)."""

    def __init__(
        self,
        reference: State | None = None,
        extra_s: float = EXTRA_S,
        tolerance: dict[str, float] | None = None,
    ) -> None:
        self.probe = Probe()
        self.given = dict(reference) if reference else None
        self.seen: list[State] = []
        self.extra_s = extra_s  # see EXTRA_S
        self.tolerance = tolerance or TOLERANCE
        self._median: tuple[int, int, State] | None = None  # (id, length) of the `seen` it is the median of

    def reference(self) -> State:
        if self.given is not None:
            return self.given
        if self._median is None or self._median[:2] != (id(self.seen), len(self.seen)):
            kinds = sorted({k for s in self.seen for k in s})
            median = {k: statistics.median(s[k] for s in self.seen if k in s) for k in kinds}
            self._median = (id(self.seen), len(self.seen), median)
        return self._median[2]

    def distance(self, state: State) -> float:
        """How far a state is from the reference, in units of each probe's tolerance (<= 1: it counts)."""
        reference = self.reference()
        return max(
            abs(math.log(state[k] / reference[k])) / math.log1p(tol)
            for k, tol in self.tolerance.items()
            if k in state and k in reference
        )

    def judge(self, timer: BlockTimer) -> None:
        """Mark the timer's blocks within tolerance as kept, or else the one nearest the reference."""
        distances = [self.distance(s) for s in timer.states]
        timer.kept = [d <= 1.0 for d in distances]
        if distances and not any(timer.kept):
            timer.kept[distances.index(min(distances))] = True


@dataclass
class Steadiness:
    """What time_interleaved saw: the reference state, blocks taken, blocks that counted, timers never counted."""

    reference: State
    blocks: int = 0
    counted: int = 0
    unmatched: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"probe_ms": self.reference, "blocks": self.blocks, "counted": self.counted, "unmatched": self.unmatched}

    def __add__(self, other: Steadiness) -> Steadiness:
        """Both measurements together (the later one's reference)."""
        return Steadiness(
            other.reference, self.blocks + other.blocks, self.counted + other.counted, self.unmatched + other.unmatched
        )


def chunks(items: Sequence[T], size: int = CHUNK) -> list[Sequence[T]]:
    """`items` in runs of `size`: what is interleaved at once (all of them would hold every session in memory)."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def _mean_state(a: State, b: State) -> State:
    return {k: math.sqrt(a[k] * b[k]) for k in a if k in b}


def time_interleaved(
    timers: Sequence[BlockTimer],
    budget_s: float,
    rounds: int,
    advance: Callable[[BlockTimer, bool], None] | None = None,
    gate: Gate | None = None,
) -> Steadiness:
    """Give each timer `rounds` blocks of `budget_s / rounds`, round robin, then more blocks to the timers with
    none that counted, until the deadline (see the module docstring). `advance(timer, counted)` is called after
    each block."""
    gate = gate or Gate()
    if not timers:
        return Steadiness(dict(gate.given or {}))
    gate.probe.warm()
    share = budget_s / rounds
    before = gate.probe.read()
    passes, deadline = 0, math.inf
    while passes < rounds or time.monotonic() < deadline:
        if passes == rounds:
            deadline = time.monotonic() + PATIENCE * budget_s * len(timers) + gate.extra_s
        pending = [
            i for i, t in enumerate(timers) if passes < rounds or not any(gate.distance(s) <= 1.0 for s in t.states)
        ]
        if not pending:
            break
        for i in pending:
            if passes >= rounds and time.monotonic() >= deadline:
                break
            timers[i].block(share)
            after = gate.probe.read()
            state = _mean_state(before, after)
            timers[i].states.append(state)
            gate.seen.append(state)
            before = after
            if advance is not None:
                advance(timers[i], gate.distance(state) <= 1.0)
        passes += 1
    for timer in timers:
        gate.judge(timer)
    stats = Steadiness(gate.reference(), blocks=sum(len(t.states) for t in timers))
    stats.counted = sum(gate.distance(s) <= 1.0 for t in timers for s in t.states)
    stats.unmatched = sum(not any(gate.distance(s) <= 1.0 for s in t.states) for t in timers)
    return stats
