"""The bundle's decision rule, checked, and the chooser that follows it: the same signals and history always give the
same variant. A row is active when it holds the current variant and not all its `leave` conditions hold, or when any
of its `enter` conditions holds; the first active row wins, none: the default. A signal that is absent fires no
`enter` and blocks no `leave`. The step-time signal `slowdown` (the default variant's recent runs over its baseline)
is held against what a row's variant measured itself: once it has run twice, its best recent time over the same
baseline is the least slowdown that enters it (times ENTER_MARGIN) and the slowdown below which it is left, so a
variant that runs slower than the loaded default is left at once and not entered again until the default is slower
still (measured on the H200: a CPU variant at 7x the idle GPU's time, entered while a Vulkan load made the GPU 2.2x
slower)."""

from __future__ import annotations

import operator
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from runtime_min import format as fmt

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
WHERE = "manifest.json rule"
Cond = tuple[str, Any, float]  # signal, comparison, threshold
ENTER_MARGIN = 1.1  # a variant measured at r times the baseline is entered at a slowdown of r * ENTER_MARGIN
MEASURED_RUNS = 2  # runs of a variant before its own time counts


@dataclass(frozen=True)
class Row:
    variant: str
    enter: tuple[Cond, ...]
    leave: tuple[Cond, ...]


@dataclass(frozen=True)
class Rule:
    """A checked rule: the default variant, the rows in priority order, probing (period, runs) and step-time window."""

    default: str
    rows: tuple[Row, ...]
    probe_every: int
    probe_runs: int  # a probe is this many runs in a row: the first may pay for a processor left idle
    window: int
    baseline_runs: int  # the step-time baseline: the median of the default variant's first runs since load

    @classmethod
    def from_json(cls, data: Any, variants: set[str]) -> Rule:
        if not isinstance(data, dict):
            raise fmt.bad(WHERE, "it is missing or not a JSON object")
        fmt.need_int(data, "version", WHERE, 1, 1)
        default = fmt.need_str(data, "default", WHERE, tuple(sorted(variants)))
        rows = []
        for i, row in enumerate(fmt.need_list(data, "rows", WHERE, dict)):
            where = f"{WHERE} row {i}"
            variant = fmt.need_str(row, "variant", where)
            if variant not in variants:
                raise fmt.bad(where, f"it names variant {variant!r}, which the bundle does not hold")
            rows.append(Row(variant, _conds(row, "enter", where), _conds(row, "leave", where)))
        probe = fmt.need_int(data, "probe_every", WHERE, 2, 10_000)
        burst = fmt.need_int(data, "probe_runs", WHERE, 1, probe - 1)
        window, base = fmt.need_int(data, "window", WHERE, 1, 100), fmt.need_int(data, "baseline_runs", WHERE, 1, 1000)
        return cls(default, tuple(rows), probe, burst, window, base)


def _conds(row: dict, key: str, where: str) -> tuple[Cond, ...]:
    conds = []
    for cond in fmt.need_list(row, key, where, list):
        ok = len(cond) == 3 and isinstance(cond[0], str) and cond[1] in OPS
        if not ok or isinstance(cond[2], bool) or not isinstance(cond[2], (int, float)):
            raise fmt.bad(where, f"{key} condition {cond!r} is not [signal, one of {' '.join(OPS)}, number]")
        conds.append((cond[0], OPS[cond[1]], float(cond[2])))
    return tuple(conds)


def _fires(conds: tuple[Cond, ...], signals: dict[str, float]) -> bool:
    return any(name in signals and op(signals[name], value) for name, op, value in conds)


def _holds(conds: tuple[Cond, ...], signals: dict[str, float]) -> bool:
    return all(name not in signals or op(signals[name], value) for name, op, value in conds)


@dataclass(frozen=True)
class Choice:
    """One run's decision: the variant, why, the signals it saw and whether the run is a probe of the default."""

    variant: str
    reason: str
    signals: dict[str, float]
    probe: bool = False


class Chooser:
    """Follows a rule over signal snapshots, keeping the current variant and the default variant's step times."""

    def __init__(self, rule: Rule) -> None:
        self.rule, self.current, self.held_runs = rule, rule.default, 0
        self._times: deque[float] = deque(maxlen=rule.window)
        self._first: list[float] = []  # the default variant's first runs, until there are baseline_runs of them
        self._base: float | None = None
        self._own: dict[str, deque[float]] = {}  # each other variant's recent run times

    def pick(self, signals: dict[str, float]) -> Choice:
        """The variant for the next run under `signals` (the step-time signal `slowdown` added when known)."""
        seen = dict(signals)
        if self._times and self._base:
            seen["slowdown"] = round(_median(self._times) / self._base, 6)
        variant, reason = self.rule.default, "default: no row is active"
        for row in map(self._measured, self.rule.rows):
            if row.variant == self.current and not _holds(row.leave, seen):
                variant, reason = row.variant, f"{row.variant}: held, not every leave condition holds"
                break
            if row.variant != self.current and _fires(row.enter, seen):
                variant, reason = row.variant, f"{row.variant}: {_which(row.enter, seen)}"
                break
        self.held_runs = self.held_runs + 1 if variant == self.current else 0
        self.current = variant
        due = self.held_runs >= self.rule.probe_every and self.held_runs % self.rule.probe_every < self.rule.probe_runs
        if due and variant != self.rule.default and self._probes(variant):
            return Choice(self.rule.default, f"probe of {self.rule.default} while in {variant}", seen, True)
        return Choice(variant, reason, seen)

    def _measured(self, row: Row) -> Row:
        """`row` with its slowdown thresholds raised to what its variant measured (see the module docstring)."""
        own = self._own.get(row.variant, ())
        if len(own) < MEASURED_RUNS or not self._base:
            return row
        ratio = min(own) / self._base  # its best recent run: the first after a switch may pay for a cold processor

        def raised(conds: tuple[Cond, ...], margin: float) -> tuple[Cond, ...]:
            return tuple((n, op, max(t, ratio * margin) if n == "slowdown" else t) for n, op, t in conds)

        return Row(row.variant, raised(row.enter, ENTER_MARGIN), raised(row.leave, 1.0))

    def _probes(self, variant: str) -> bool:
        """Held by a row that leaves on step times: only a run of the default variant can show it recovered."""
        return any(row.variant == variant and any(c[0] == "slowdown" for c in row.leave) for row in self.rule.rows)

    def observe(self, choice: Choice, ms: float) -> None:
        """A finished run's wall time (a replayed `default_ms` stands in for the default variant's)."""
        if choice.variant != self.rule.default:
            if "default_ms" not in choice.signals:  # a replay has no times of the other variants
                self._own.setdefault(choice.variant, deque(maxlen=self.rule.window)).append(ms)
            return
        ms = choice.signals.get("default_ms", ms)
        if choice.probe:
            self._times.clear()  # a probe's (last) run replaces the stale times from before the switch
        self._times.append(ms)
        if self._base is None and not choice.probe:
            self._first.append(ms)
            if len(self._first) == self.rule.baseline_runs:
                self._base = _median(self._first)


def _median(times: Iterable[float]) -> float:
    return sorted(times)[len(times) // 2]


def _which(conds: tuple[Cond, ...], signals: dict[str, float]) -> str:
    name, op, value = next(c for c in conds if c[0] in signals and c[1](signals[c[0]], c[2]))
    symbol = next(k for k, v in OPS.items() if v is op)
    return f"{name} = {signals[name]:g} {symbol} {value:g}"


def replay(rule: Rule, source: Any, runs: int) -> list[Choice]:
    """The choices over `runs` runs of replayed signals, with no plan: a run's time is the trace's `default_ms`."""
    chooser, choices = Chooser(rule), []
    for run in range(runs):
        choices.append(chooser.pick(source.latest(run)))
        if "default_ms" in choices[-1].signals:
            chooser.observe(choices[-1], choices[-1].signals["default_ms"])
    return choices
