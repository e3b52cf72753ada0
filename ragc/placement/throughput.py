"""Pipeline placement for streams: contiguous stages of the topological unit order, one device per stage and at
most one stage per device, minimising the slowest stage. A stage's time is its units' time on its device, their
host input and output transfers, and the transfers of every tensor it reads from earlier stages.

Exact: a depth-first search over stage cuts whose last two stages are evaluated for every cut at once with
numpy; a cut loop stops as soon as its stage alone is no better than the best plan found so far (stage time
only grows as a stage extends).
"""

from __future__ import annotations

import math
import time

import numpy as np

from ragc.errors import PlacementError
from ragc.placement.model import Model
from ragc.placement.problem import Placement
from ragc.placement.simulate import placement_from


class _Search:
    def __init__(self, model: Model) -> None:
        self.model = model
        self.n = model.n
        base = model.cost + model.host_in + model.host_out
        self.inf_count = np.vstack([np.zeros(len(model.devices)), np.cumsum(~np.isfinite(base), axis=0)])
        self.prefix = np.vstack([np.zeros(len(model.devices)), np.cumsum(np.where(np.isfinite(base), base, 0), 0)])
        self.mem = np.concatenate([[0.0], np.cumsum(model.mem)])
        self.src = np.array([s for s, _ in model.edges], dtype=np.int64)
        self.dst = np.array([t for _, t in model.edges], dtype=np.int64)
        self.dev = np.full(self.n, -1, dtype=np.int64)  # devices of the units before the current cut
        self.best = math.inf
        self.best_stages: list[tuple[int, int, int]] = []

    def own(self, a: np.ndarray | int, b: np.ndarray | int, d: int) -> np.ndarray:
        """Time of units a..b-1 on device d without transfers from earlier stages; inf if unsupported or too big."""
        t = self.prefix[b, d] - self.prefix[a, d]
        over = (self.inf_count[b, d] > self.inf_count[a, d]) | (self.mem[b] - self.mem[a] > self.model.capacity[d])
        return np.where(over, math.inf, t)

    def stage(self, a: int, d: int) -> np.ndarray:
        """[b - a - 1]: time of the stage of units a..b-1 on device d, given the devices of the units before a."""
        m = (self.src < a) & (self.dst >= a)
        w = self.model.edge_delay[np.nonzero(m)[0], self.dev[self.src[m]], d]
        incoming = np.cumsum(np.bincount(self.dst[m] - a, weights=w, minlength=self.n - a))
        return self.own(a, np.arange(a + 1, self.n + 1), d) + incoming

    def last(self, a: int, d: int, d2: int) -> np.ndarray:
        """[b - a - 1]: time of a final stage b..n-1 on d2 after a stage a..b-1 on d (b = n: empty, inf)."""
        delay = self.model.edge_delay
        earlier = self.src < a
        w = delay[np.nonzero(earlier)[0], self.dev[self.src[earlier]], d2]
        from_before = np.bincount(self.dst[earlier], weights=w, minlength=self.n + 1)[::-1].cumsum()[::-1]
        later = ~earlier
        spans = np.zeros(self.n + 2)
        np.add.at(spans, self.src[later] + 1, delay[np.nonzero(later)[0], d, d2])
        np.add.at(spans, self.dst[later] + 1, -delay[np.nonzero(later)[0], d, d2])
        from_previous = np.cumsum(spans)
        b = np.arange(a + 1, self.n + 1)
        t = np.full(len(b), math.inf)
        inner = b < self.n
        t[inner] = self.own(b[inner], self.n, d2) + from_before[b[inner]] + from_previous[b[inner]]
        return t

    def run(self, a: int, unused: list[int], slowest: float, stages: list[tuple[int, int, int]]) -> None:
        for d in unused:
            here = np.maximum(self.stage(a, d), slowest)
            self._offer(here[-1], stages + [(a, self.n, d)])
            rest = [k for k in unused if k != d]
            for d2 in rest:
                both = np.maximum(here, self.last(a, d, d2))
                k = int(np.argmin(both))
                self._offer(both[k], stages + [(a, a + k + 1, d), (a + k + 1, self.n, d2)])
            if len(rest) < 2:
                continue
            for k in range(self.n - a - 1):
                if here[k] >= self.best:
                    break
                self.dev[a : a + k + 1] = d
                self.run(a + k + 1, rest, float(here[k]), stages + [(a, a + k + 1, d)])

    def _offer(self, value: float, stages: list[tuple[int, int, int]]) -> None:
        if value < self.best:
            self.best, self.best_stages = float(value), stages


def solve_throughput(model: Model) -> Placement:
    """The exact pipeline plan; Placement.predicted_ms is its slowest stage, start/finish one request's times."""
    started = time.perf_counter()
    search = _Search(model)
    search.run(0, list(range(len(model.devices))), 0.0, [])
    if not search.best_stages:
        raise PlacementError("no pipeline fits: some unit runs nowhere within capacity; raise capacity_bytes")
    return _pipeline(model, search.best_stages, search.best, started)


def repriced(model: Model, plan: Placement) -> Placement:
    """A pipeline plan (solved under other costs) with its slowest stage and one request's times from `model`."""
    if not plan.stages:
        raise PlacementError("a pipeline plan without stages cannot be repriced")
    search, stages, slowest = _Search(model), [], 0.0
    for names in plan.stages:
        a = stages[-1][1] if stages else 0
        b, d = a + len(names), model.devices.index(plan.assignment[names[0]])
        slowest = max(slowest, float(search.stage(a, d)[b - a - 1]))  # given the devices of the stages before
        search.dev[a:b] = d
        stages.append((a, b, d))
    return _pipeline(model, stages, slowest, time.perf_counter(), plan.solver)


def _pipeline(
    model: Model, stages: list[tuple[int, int, int]], slowest: float, started: float, solver: str = "throughput"
) -> Placement:
    dev = [d for a, b, d in stages for _ in range(a, b)]
    placement = placement_from(model, dev, np.arange(model.n, dtype=float), solver, started, gap=0.0)
    placement.predicted_ms = slowest
    placement.stages = [model.names[a:b] for a, b, _ in stages]
    return placement
