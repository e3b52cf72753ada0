"""Target files: every figure the cost model needs, each with its source; the NPU section the NPU engineer reads."""

from __future__ import annotations

import json

import pytest

from ragc.costmodel import cost_fn
from ragc.errors import PersonalityError
from ragc.personality.store import load_personality
from ragc.profiler.specs import conv
from ragc.targets import check_target, load_target, target_names

NPU_XDNA2 = {
    "arch": "xdna2",
    "tiles": 32,
    "macs_per_cycle_per_tile": {"bf16": 256, "int8": 512},
    "clock_ghz": 1.8,
    "dispatch_us": 50,
    "host_sync_ms": 0.5,
    "cold_start_ms": 120,
    "measured_bf16_gemm_tflops": 14.7,
}


def test_shipped_targets_load_and_cite_sources():
    assert target_names() == ["ryzen-7-7840u", "ryzen-ai-9-hx-370"]
    for name in target_names():
        data = load_target(name)
        assert data["unified_memory"] is True
        assert set(data["devices"]) == {"cpu", "gpu", "npu"}
        assert all(isinstance(v, str) and v for v in data["sources"].values())


def test_npu_sections():
    hx = load_target("ryzen-ai-9-hx-370")["npu"]
    assert {k: hx[k] for k in NPU_XDNA2} == NPU_XDNA2
    assert hx["dma_gbps"] > 0
    phoenix = load_target("ryzen-7-7840u")["npu"]
    assert (phoenix["arch"], phoenix["tiles"], phoenix["macs_per_cycle_per_tile"]["bf16"]) == ("xdna1", 16, 128)
    assert (phoenix["clock_ghz"], phoenix["measured_bf16_gemm_tflops"]) == (1.6, 3.1)


def test_a_figure_without_source_is_refused(tmp_path):
    data = load_target("ryzen-7-7840u")
    del data["sources"]["devices.gpu.peak_gbps"]
    with pytest.raises(PersonalityError, match=r"devices.gpu.peak_gbps has no 'sources' entry"):
        check_target(data, "broken.json")
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PersonalityError, match="cite where it comes from"):
        load_target(path)


def test_unknown_target_names_the_choices():
    with pytest.raises(PersonalityError, match="ryzen-ai-9-hx-370"):
        load_personality("no-such-chip")


def test_target_personality_feeds_placement():
    p = load_personality("ryzen-ai-9-hx-370")
    assert p.is_target and p.devices == ["cpu", "gpu", "npu"]
    assert p.transfer_ms("cpu", "cpu", 10**6) == 0.0
    assert p.transfer_ms("cpu", "gpu", 6 * 10**7) == pytest.approx(0.02 + 1.0)
    assert p.capacity_bytes["cpu"] == 32 * 2**30
    graph = conv(64, 56, 64, 3)
    cost = cost_fn(p)
    times = {d: cost(graph, graph.ops[0], d) for d in p.devices}
    assert all(t > 0 for t in times.values())
    assert times["gpu"] < times["cpu"]  # 11.9 TFLOPS beats 1.1 for a dense 3x3 conv
