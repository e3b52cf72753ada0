"""Streams: outputs in input order, frames overlapping on different processors, bounded frames in flight."""

from __future__ import annotations

import threading

import pytest
from executor_plans import feeds, load_quiet, same_bits, spread

import runtime_min
from runtime_min.backends import Executable
from runtime_min.errors import DeviceFailure, InputError

GUARD_S = 60  # only against a hang: the gate below opens as soon as frames overlap

pytest_plugins = ["executor_fixtures"]  # the shared `chain` and `wants` fixtures


@pytest.fixture
def two_stage(chain, tmp_path):
    """Stage 1 (p0, p1) on the gpu worker, stage 2 (p2, p3) on the npu worker (both run CPU fallbacks)."""
    plan = load_quiet(spread(chain, tmp_path / "s", {"p0": "gpu", "p1": "gpu", "p2": "npu", "p3": "npu"}))
    yield plan
    plan.close()


class Gate(Executable):
    """Wraps a step: `opens` sets the event on its second run; `waits` blocks its first run until the event is set."""

    def __init__(self, inner: Executable, event: threading.Event, role: str) -> None:
        self.inner, self.event, self.role, self.calls, self.opened = inner, event, role, 0, None

    def run(self, feeds):
        self.calls += 1
        if self.role == "opens" and self.calls == 2:
            self.event.set()
        if self.role == "waits" and self.calls == 1:
            self.opened = self.event.wait(GUARD_S)
        return self.inner.run(feeds)


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_outputs_come_in_input_order(two_stage, wants, depth):
    outputs = list(two_stage.stream((feeds(seed) for seed in range(12)), depth=depth))
    assert len(outputs) == 12
    assert all(same_bits(got, want) for got, want in zip(outputs, wants, strict=True))


def test_next_frame_starts_stage_one_while_this_frame_is_in_stage_two(two_stage, wants):
    event = threading.Event()
    two_stage.steps[0].executable = Gate(
        two_stage.steps[0].executable, event, "opens"
    )  # p0, the gpu worker's first step
    two_stage.steps[3].executable = stage_two = Gate(
        two_stage.steps[3].executable, event, "waits"
    )  # p3 on the npu worker
    outputs = list(two_stage.stream((feeds(seed) for seed in range(3)), depth=2))
    assert stage_two.opened is True  # frame 0's p3 saw frame 1's p0 run while it was still busy
    assert all(same_bits(got, want) for got, want in zip(outputs, wants, strict=False))


@pytest.mark.parametrize("depth", [1, 3])
def test_frames_in_flight_are_bounded_by_depth(two_stage, depth):
    pulled = []

    def frames():
        for seed in range(8):
            pulled.append(seed)
            yield feeds(seed)

    for received, _ in enumerate(two_stage.stream(frames(), depth=depth), start=1):
        assert len(pulled) - received < depth


def test_single_processor_plan_streams(chain, wants):
    with runtime_min.load(chain) as plan:
        outputs = list(plan.stream([feeds(seed) for seed in range(4)]))
    assert all(same_bits(got, want) for got, want in zip(outputs, wants, strict=False))


@pytest.mark.parametrize("depth", [0, -1, 1.5, True])
def test_bad_depth(two_stage, depth):
    with pytest.raises(ValueError, match="depth must be a whole number >= 1"):
        two_stage.stream([feeds()], depth=depth)


def test_bad_feed_stops_the_stream_and_the_plan_stays_usable(two_stage, wants):
    frames = [feeds(0), feeds(1), {"x": feeds()["x"]}, feeds(3)]
    got = []
    with pytest.raises(InputError, match=r"missing \['y'\]"):
        for out in two_stage.stream(frames, depth=3):
            got.append(out)
    assert len(got) == 0 or same_bits(got[0], wants[0])
    assert same_bits(two_stage.run(feeds(5)), wants[5])


def test_leaving_a_stream_early_drains_it(two_stage, wants):
    stream = two_stage.stream((feeds(seed) for seed in range(10)), depth=4)
    assert same_bits(next(stream), wants[0])
    stream.close()
    assert same_bits(two_stage.run(feeds(7)), wants[7])


def test_a_processor_failure_ends_the_stream(two_stage):
    class Broken(Executable):
        def run(self, feeds):
            raise RuntimeError("device lost")

    two_stage.steps[2].executable = Broken()
    with pytest.raises(DeviceFailure, match="partition p2"):
        list(two_stage.stream((feeds(seed) for seed in range(6)), depth=2))
    with pytest.raises(DeviceFailure, match="load the plan again"):
        two_stage.run(feeds())
