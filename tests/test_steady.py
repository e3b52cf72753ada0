"""steady: probe readings, the reference-state gate, and round-robin block timing with retakes."""

from __future__ import annotations

import time

import pytest

from ragc.profiler.specs import chained, conv, unary
from ragc.profiler.steady import BlockTimer, Gate, Probe, time_interleaved


class Sleeper(BlockTimer):
    """Times nothing: each block just records its budget (the gate and the round robin are what is tested)."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks: list[float] = []

    def block(self, budget_s: float) -> None:
        time.sleep(budget_s)
        self.blocks.append(budget_s)

    def walls(self) -> list[float]:
        return [1000 * b * (1 + i) for i, b in enumerate(self.blocks)]  # each block slower than the last


def test_probe_reads_both_kinds():
    reading = Probe().read()
    assert set(reading) == {"sync", "memory"} and all(ms > 0 for ms in reading.values())


def test_extra_probes_join_the_state_and_count_only_where_the_reference_has_them():
    probe = Probe()
    probe.extra["gpu"] = lambda: 2.5
    assert probe.read()["gpu"] == 2.5
    gate = Gate()
    gate.seen = [{"sync": 1.0, "memory": 2.0}, {"sync": 1.0, "memory": 2.0, "gpu": 4.0}]  # a CPU block, a GPU block
    assert gate.reference() == {"sync": 1.0, "memory": 2.0, "gpu": 4.0}
    assert gate.distance({"sync": 1.0, "memory": 2.0, "gpu": 6.0}) > 1.0  # the GPU ran in another state
    assert Gate({"sync": 1.0, "memory": 2.0}).distance({"sync": 1.0, "memory": 2.0, "gpu": 6.0}) == 0.0


def test_reference_is_the_usual_state_when_none_is_given():
    gate = Gate()
    gate.seen = [{"sync": 1.0, "memory": 2.0}, {"sync": 1.01, "memory": 2.1}, {"sync": 3.0, "memory": 1.0}]
    assert gate.reference() == {"sync": 1.01, "memory": 2.0}
    assert gate.distance({"sync": 1.01, "memory": 2.0}) == 0.0
    assert gate.distance({"sync": 3.0, "memory": 1.0}) > 1.0  # the odd state does not count


def test_blocks_outside_the_reference_state_are_retaken_then_the_nearest_counts():
    timers = [Sleeper(), Sleeper()]
    gate = Gate({"sync": 1e-6, "memory": 1e-6}, extra_s=0.3)  # a state no machine is ever in
    stats = time_interleaved(timers, 0.02, 2, gate=gate)
    assert stats.counted == 0 and stats.unmatched == 2 and stats.blocks > 4  # retaken until the deadline
    for t in timers:
        assert len(t.states) == len(t.blocks) and sum(t.kept) == 1 and len(t.counted(t.blocks)) == 1


def test_steady_machine_needs_no_retakes():
    timers = [Sleeper() for _ in range(3)]
    gate = Gate(tolerance={"sync": 1e9, "memory": 1e9}, extra_s=5.0)  # every state counts
    stats = time_interleaved(timers, 0.01, 2, gate=gate)
    assert stats.blocks == stats.counted == 6 and stats.unmatched == 0
    assert all(t.kept == [True, True] for t in timers)
    assert set(stats.reference) == {"sync", "memory"}
    assert timers[0].spread_pct() == pytest.approx(100.0)  # 10 ms and 20 ms


def test_chained_repeats_an_op():
    chain = chained(conv(8, 7, 8, 1), 4)
    assert [op.op_type for op in chain.ops] == ["Conv"] * 4
    assert chain.ops[1].inputs[0] == chain.ops[0].outputs[0] and chain.outputs == [chain.ops[-1].outputs[0]]
    assert len(chained(unary("Relu", 16), 1).ops) == 1


def test_context_samples_add_up_to_the_wall_time():
    from ragc.profiler.context import context_graphs, cpu_samples, to_wall
    from ragc.profiler.timers import GraphTimer

    assert to_wall({"a": 1.0, "b": 3.0}, 5.0, 0.5, 0.25) == {"a": 1.0, "b": 3.0}  # 0.5 + 2 * 0.25 + 4 = 5
    assert to_wall({"a": 1.0, "b": 3.0}, 2.5, 0.5, 0.0) == {"a": 0.5, "b": 1.5}
    name, graph = context_graphs(quick=True)[0]
    timer = GraphTimer(graph, profiled=True, label=name)
    time_interleaved([timer], 0.1, 1, gate=Gate(extra_s=0.0))
    samples = cpu_samples(name, graph, timer, 0.0, 0.01, 0.001, "context")
    assert samples and {s["source"] for s in samples} == {"context"}
    total = 0.01 + len(samples) * 0.001 + sum(s["ms"] for s in samples)
    assert total == pytest.approx(timer.wall_ms(), rel=1e-6)
