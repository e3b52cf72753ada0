"""A small personality measured for real on this CPU (a few one-op benchmarks), shared by the personality and
cost-model tests."""

from __future__ import annotations

from ragc.personality.chip import chip_facts, chip_id
from ragc.personality.store import SCHEMA, Personality
from ragc.profiler.entries import device_entry
from ragc.profiler.profile import cpu_overheads, measure_samples
from ragc.profiler.specs import binary, conv, gemm, layernorm, pool, unary
from ragc.profiler.steady import Gate


def small_specs():
    yield from ((f"conv{c}", conv(c, 14, c, k)) for c in (8, 16, 32) for k in (1, 3))
    yield from ((f"dw{c}", conv(c, 14, c, 3, group=c)) for c in (16, 32))
    yield from ((f"gemm{m}", gemm(m, 64, 64)) for m in (1, 8, 32))
    yield from ((f"relu{n}", unary("Relu", n)) for n in (1000, 20000, 100000))
    yield from ((f"add{n}", binary("Add", (1, n), (1, n))) for n in (1000, 50000))
    yield "pool", pool("MaxPool", 16, 28)
    yield "ln", layernorm(16, 64)


def measured_personality() -> Personality:
    facts = chip_facts()
    gate = Gate(extra_s=0.0)
    dispatch, per_op, bias = cpu_overheads(0.05, 1, gate)
    samples, _ = measure_samples(list(small_specs()), 0.02, 1, bias, gate=gate)
    cpu = device_entry("test cpu", samples, dispatch, per_op, 2**34, profiler_bias_ms=bias)
    return Personality(
        {
            "schema": SCHEMA,
            "kind": "personality",
            "chip_id": chip_id(facts),
            "chip": facts,
            "devices": {"cpu": cpu},
            "transfers": {},
            "unified_memory": True,
        }
    )
