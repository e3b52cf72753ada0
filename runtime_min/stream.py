"""Assembly-line runs: up to `depth` frames in flight, so different frames occupy different processors at once,
and results come back in input order."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import numpy as np

from runtime_min.executor import Executor, Frame

T = TypeVar("T")
Feeds = dict[str, np.ndarray]


def check_depth(depth: int) -> int:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"stream depth must be a whole number >= 1, not {depth!r}")
    return depth


def assembly_line(
    executor: Executor,
    frames: Iterable[Feeds],
    depth: int,
    check: Callable[[Feeds], Feeds],
    finish: Callable[[Frame], T],
) -> Iterator[T]:
    """Submit each checked feed dict as soon as fewer than `depth` frames are in flight; yield `finish(frame)` in
    order. An error stops the stream after the frames already in flight have drained (no worker is left busy)."""
    in_flight: deque[Frame] = deque()
    try:
        for feeds in frames:
            in_flight.append(executor.submit(check(feeds)))
            if len(in_flight) >= depth:
                yield finish(in_flight.popleft().result())
        while in_flight:
            yield finish(in_flight.popleft().result())
    finally:
        for frame in in_flight:
            frame.wait()
