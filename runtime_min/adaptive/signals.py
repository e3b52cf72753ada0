"""Signal sources: the live one samples the machine's state (readers over sysfs and procfs, each optional) in a
background thread at a few Hz; the replay one plays a recorded JSON-lines trace. Both answer `latest(run)` with a
dict of signal name -> number, which on the live source is one attribute read (no I/O on the hot path)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

from runtime_min.errors import InputError

Reader = Callable[[], float | None]


def _read_number(path: Path) -> float | None:
    try:
        return float(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _max_of(paths: list[Path], scale: float = 1.0) -> float | None:
    values = [v for p in paths if (v := _read_number(p)) is not None]
    return max(values) / scale if values else None


def default_readers(root: str | Path = "/") -> dict[str, Reader]:
    """Readers under `root` (a fake sysfs/procfs tree in tests): each returns None when its file is absent."""
    root = Path(root)
    drm, supply, thermal = root / "sys/class/drm", root / "sys/class/power_supply", root / "sys/class/thermal"

    def on_battery() -> float | None:
        mains = [p / "online" for p in sorted(supply.glob("*")) if _read_number(p / "online") is not None]
        return None if not mains else float(not any(_read_number(p) for p in mains))

    def load_per_core() -> float | None:
        load = _read_number(root / "proc/loadavg")
        return None if load is None else round(load / (os.cpu_count() or 1), 3)

    return {
        "gpu_busy": lambda: _max_of(sorted(drm.glob("card*/device/gpu_busy_percent"))),
        "load_per_core": load_per_core,
        "on_battery": on_battery,
        "temp_c": lambda: _max_of(sorted(thermal.glob("thermal_zone*/temp")), 1000.0),
    }


class LiveSignals:
    """Samples every reader `hz` times a second in a daemon thread; `latest` returns the last complete snapshot."""

    def __init__(self, readers: dict[str, Reader] | None = None, hz: float = 4.0) -> None:
        self.readers = default_readers() if readers is None else readers
        self.period = 1.0 / hz
        self._latest: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sample()

    def sample(self) -> None:
        """Read every reader once and publish the snapshot (one reference swap)."""
        snapshot = {}
        for name, read in self.readers.items():
            value = read()
            if value is not None:
                snapshot[name] = float(value)
        self._latest = snapshot

    def latest(self, run: int = 0) -> dict[str, float]:
        return self._latest

    def start(self) -> LiveSignals:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="runtime_min-signals", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            self.sample()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


class ReplaySignals:
    """A recorded trace: one JSON object a line, {"run": first run it applies to (default: its line number), signal:
    number, ...}; a line holds until the next one's run. `default_ms` stands in for the default variant's step time."""

    def __init__(self, path: str | Path) -> None:
        self.lines: list[tuple[int, dict[str, float]]] = []
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise InputError(
                f"cannot read the signal trace {str(path)!r} ({exc.strerror}); give a JSON-lines file"
            ) from None
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                self.lines.append(_trace_line(line, number, path, len(self.lines)))
        if not self.lines:
            raise InputError(f"the signal trace {str(path)!r} is empty; record one signal object a line")

    def latest(self, run: int = 0) -> dict[str, float]:
        current = self.lines[0][1]
        for first, signals in self.lines:
            if first > run:
                break
            current = signals
        return current

    def start(self) -> ReplaySignals:
        return self

    def close(self) -> None:
        """Nothing to stop: a replay has no thread."""


def _trace_line(line: str, number: int, path: str | Path, index: int) -> tuple[int, dict[str, float]]:
    where = f"signal trace {str(path)!r} line {number}"
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        raise InputError(f"{where} is not JSON; write one JSON object a line") from None
    ok = isinstance(data, dict) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in data.values())
    if not ok:
        raise InputError(f'{where} is not an object of numbers; write e.g. {{"run": 0, "gpu_busy": 90}}')
    run = data.pop("run", index)
    return int(run), {k: float(v) for k, v in data.items()}
