"""Target files: every figure the cost model needs, each with its source; the NPU section the NPU engineer reads."""

from __future__ import annotations

import json

import pytest

from ragc.costmodel import cost_fn
from ragc.errors import PersonalityError
from ragc.personality.store import load_personality
from ragc.profiler.specs import conv
from ragc.targets import check_target, figure, load_target, target_names, target_path


def test_shipped_targets_load_and_cite_sources():
    assert target_names() == ["ryzen-7-7840u", "ryzen-ai-9-hx-370"]
    for name in target_names():
        data = load_target(name)
        assert data["unified_memory"] is True
        assert set(data["devices"]) == {"cpu", "gpu", "npu"}
        assert all(isinstance(v, str) and v for v in data["sources"].values())


def test_npu_sections():
    hx = load_target("ryzen-ai-9-hx-370")
    assert (hx["npu"]["arch"], hx["npu"]["columns"], hx["npu"]["rows"], hx["npu"]["clock_ghz"]) == ("xdna2", 8, 4, 1.8)
    assert hx["npu"]["macs_per_cycle"] == {"bf16": 256, "int8": 512}
    phoenix = load_target("ryzen-7-7840u")["npu"]
    assert (phoenix["arch"], phoenix["columns"], phoenix["macs_per_cycle"]["bf16"]) == ("xdna1", 4, 128)
    # devices.npu's launch and peak figures are derived from the npu section, never written twice
    npu = hx["devices"]["npu"]
    assert npu["dispatch_ms"] == hx["npu"]["host_sync_ms"] and npu["peak_gbps"] == hx["npu"]["ddr_gbps"]
    assert npu["peak_gflops"] == pytest.approx(2 * 32 * 256 * 1.8)
    raw = json.loads(target_path("ryzen-ai-9-hx-370").read_text())
    assert set(raw["devices"]["npu"]) == {"name", "memory_bytes"}


def test_power_and_uncertainty_sections():
    for name in target_names():
        data = load_target(name)
        assert set(data["power"]) == {"cpu", "gpu", "npu"}
        assert data["power"]["npu"]["active_w"] < data["power"]["gpu"]["active_w"]
        for path, (low, high) in data["uncertainty"].items():
            assert low <= figure(data, path) <= high, path
    data = load_target("ryzen-ai-9-hx-370")
    del data["sources"]["power.gpu.idle_w"]
    with pytest.raises(PersonalityError, match=r"power.gpu.idle_w has no 'sources' entry"):
        check_target(data, "broken.json")
    data = load_target("ryzen-ai-9-hx-370")
    data["uncertainty"]["npu.ddr_gbps"] = [1, 2]
    with pytest.raises(PersonalityError, match=r"uncertainty\['npu.ddr_gbps'\]"):
        check_target(data, "broken.json")
    data = load_target("ryzen-ai-9-hx-370")
    del data["sources"]["npu.context_switch_ms"]
    with pytest.raises(PersonalityError, match="context_switch_ms"):
        check_target(data, "broken.json")


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
