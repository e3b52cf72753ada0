"""Soak: a thousand runs of a small two-worker plan leave the process's resident memory where warm-up left it."""

from __future__ import annotations

import os

from executor_plans import chain_ops, compile_split, feeds, load_quiet, same_bits, spread

WARM_UP = 100
RUNS = 1000
BOUND = 4 << 20  # bytes of RSS growth allowed after warm-up (allocator noise, not per-run leaks)


def resident_bytes() -> int:
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_thousand_runs_do_not_grow_memory(tmp_path):
    bundle = spread(compile_split(chain_ops(4), tmp_path / "c"), tmp_path / "s", {"p1": "npu", "p3": "npu"})
    with load_quiet(bundle) as plan:
        f = feeds()
        first = plan.run(f)
        for _ in range(WARM_UP):
            plan.run(f)
        before = resident_bytes()
        for _ in range(RUNS):
            out = plan.run(f)
        grown = resident_bytes() - before
        assert same_bits(out, first)
    assert grown < BOUND, f"RSS grew by {grown / 2**20:.1f} MiB over {RUNS} runs"
