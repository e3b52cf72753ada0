"""Chip identity, the personality store, the profiler's pieces (CPU and Vulkan) and run recording."""

from __future__ import annotations

import copy
import json

import pytest
from click.testing import CliRunner
from personality_fixtures import measured_personality

from ragc.cli import main
from ragc.costmodel import kernel_features, partition_op_stats
from ragc.errors import PersonalityError
from ragc.ir import Op, Tensor
from ragc.personality.chip import chip_facts, chip_id, cpu_facts, npu_facts
from ragc.personality.store import (
    SCHEMA,
    Personality,
    current_chip_id,
    load_personality,
    read_personality,
    save_personality,
    store_dir,
    store_path,
)
from ragc.profiler.entries import peak_rates
from ragc.profiler.gpu_bench import calibration_graphs, fit_launch, fit_transfer
from ragc.profiler.record import record_run, sample_sources
from ragc.profiler.specs import conv, unary
from ragc.profiler.steady import Gate, time_interleaved


@pytest.fixture(scope="module")
def measured():
    return measured_personality()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path


def test_cpu_facts_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("model name\t: AMD Ryzen AI 9 HX 370\nflags\t\t: fpu avx2 fma avx512f avx512_bf16 hypervisor\n")
    facts = cpu_facts(info)
    assert facts["model"] == "AMD Ryzen AI 9 HX 370" and facts["isa"] == ["avx2", "fma", "avx512f", "avx512_bf16"]


def test_npu_facts_need_an_accel_node(tmp_path):
    assert npu_facts(tmp_path) is None
    (tmp_path / "accel0").touch()
    assert npu_facts(tmp_path)["nodes"] == ["accel0"]


def test_chip_id_is_stable_and_ignores_driver_versions():
    facts = chip_facts()
    assert chip_id(facts) == chip_id(chip_facts()) == current_chip_id()
    bumped = copy.deepcopy(facts)
    for gpu in bumped["gpus"]:
        gpu["driver_version"] += 1
    assert chip_id(bumped) == chip_id(facts)
    bumped["cpu"]["cores"] += 1
    assert chip_id(bumped) != chip_id(facts)


def test_chip_is_detected_once_per_process(monkeypatch):
    """A GPU that stops answering mid-process (busy with this process's plans) must not change the chip's id."""
    before = chip_facts()
    monkeypatch.setattr("ragc.personality.chip.vulkan_facts", lambda: [])
    assert chip_facts() == before and current_chip_id() == chip_id(before)
    chip_facts()["cpu"]["cores"] = -1  # callers get their own copy
    assert chip_facts() == before


def test_store_roundtrip_is_atomic(cache, measured):
    assert store_dir() == cache / "ragc" / "personality"
    path = save_personality(copy.deepcopy(measured))
    assert path == store_path(measured.chip_id) and [p.name for p in path.parent.iterdir()] == [path.name]
    again = read_personality(path)
    assert again.data == json.loads(json.dumps(measured.data))
    assert load_personality(None).chip_id == measured.chip_id  # this chip's stored personality, no profiling
    assert load_personality(str(path)).samples("cpu") == again.samples("cpu")


def test_bad_personality_files(tmp_path, measured):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PersonalityError, match="not readable JSON"):
        read_personality(bad)
    old = dict(measured.data, schema=SCHEMA + 1)
    with pytest.raises(PersonalityError, match="run `ragc profile`"):
        Personality(old)
    with pytest.raises(PersonalityError, match="has no device 'npu'"):
        measured.samples("npu")


def test_transfers_between_devices():
    links = {
        "cpu->gpu": {"latency_ms": 0.1, "gbps": 10.0},
        "gpu->cpu": {"latency_ms": 0.2, "gbps": 5.0},
        "cpu->npu": {"latency_ms": 0.05, "gbps": 20.0},
        "npu->cpu": {"latency_ms": 0.05, "gbps": 20.0},
    }
    dev = {"peak_gflops": 1.0, "peak_gbps": 1.0, "dispatch_ms": 0.0, "op_overhead_ms": 0.0, "memory_bytes": 1}
    p = Personality(
        {"schema": SCHEMA, "chip_id": "x", "devices": {"cpu": dev, "gpu": dev, "npu": dev}, "transfers": links}
    )
    assert p.transfer_ms("gpu", "gpu", 10**9) == 0.0
    assert p.transfer_ms("cpu", "gpu", 10**7) == pytest.approx(0.1 + 1.0)
    assert p.transfer_ms("gpu", "npu", 10**7) == pytest.approx(0.2 + 2.0 + 0.05 + 0.5)  # through the host
    del p.data["transfers"]["npu->cpu"]
    with pytest.raises(PersonalityError, match="no transfer figures for npu->cpu"):
        p.transfer_ms("npu", "cpu", 1)


def test_profiled_samples_and_peaks(measured):
    cpu = measured.device("cpu")
    assert cpu["dispatch_ms"] > 0 and cpu["op_overhead_ms"] >= 0
    assert all(s["ms"] > 0 and s["source"] == "profile" for s in cpu["samples"])
    gflops, gbps = peak_rates(cpu["samples"])
    assert (cpu["peak_gflops"], cpu["peak_gbps"]) == (gflops, gbps) and gflops > 0.1 and gbps > 0.1


def test_fit_transfer_recovers_latency_and_bandwidth():
    points = [(n, 0.05 + n / 4e6) for n in (1e5, 1e6, 4e6, 1.6e7)]  # 4 GB/s = 4e6 bytes per ms
    link = fit_transfer(points)
    assert link["latency_ms"] == pytest.approx(0.05) and link["gbps"] == pytest.approx(4.0)


def test_glue_fit_recovers_its_terms_with_the_copies_measured_bandwidth():
    """Walls made from known glue terms come back from the fit; the hand-off's bandwidth is the copy benchmark's,
    not fitted (two tensor sizes cannot tell it from the GPU blocks' time: a free fit said 2.0 GB/s on the H200
    where copies ran at 22.2)."""
    from ragc.profiler.glue import PATTERNS, SIZES, features, fit

    block = {"c": (0.05, 0.2), "g": (0.01, 0.03)}  # per block, per size
    launch_cpu, latency, fixed, gbps = 0.04, 0.12, 0.01, 20.0
    rows = []
    for s, (c, hw) in enumerate(SIZES):
        nbytes = 4 * c * hw * hw
        for pattern in PATTERNS:
            n_cpu, n_gpu, cpu_runs, islands = features(pattern)
            wall = n_cpu * block["c"][s] + n_gpu * block["g"][s] + cpu_runs * launch_cpu + fixed
            rows.append((pattern, s, nbytes, wall + islands * (2 * latency + 2 * nbytes / (gbps * 1e6))))
    glue = fit(rows, gbps)
    assert glue["launch_ms"]["cpu"] == pytest.approx(launch_cpu, rel=1e-4)
    assert glue["handoff"]["cpu->gpu"] == {"latency_ms": pytest.approx(latency, rel=1e-4), "gbps": gbps}
    assert glue["fit"]["max_error_pct"] < 0.01  # (a fixed cost and the six blocks' are one column: any split fits)


def test_fit_launch_recovers_dispatch_overhead_and_scale():
    points = [(n, k, 0.2 + n * 0.004 + 1.06 * k) for n, k in [(1, 0.01), (32, 0.2), (8, 3.0), (16, 0.5), (3, 9.0)]]
    dispatch, overhead, scale = fit_launch(points)
    assert dispatch == pytest.approx(0.2, rel=1e-3) and overhead == pytest.approx(0.004, rel=1e-2)
    assert scale == pytest.approx(1.06, rel=1e-3)
    assert fit_launch([(1, 1.0, 0.1), (2, 2.0, 0.2), (3, 3.0, 0.3)])[2] == pytest.approx(0.8)  # scale stays bounded


def test_gpu_timer_on_vulkan():
    pytest.importorskip("vulkan")
    from ragc.profiler.gpu_bench import timing_backends
    from runtime_min.errors import BackendUnavailable

    try:
        with timing_backends() as backends:
            _check_gpu_timer(backends)
    except BackendUnavailable as exc:
        pytest.skip(f"no Vulkan device: {exc}")


def _check_gpu_timer(backends):
    from ragc.profiler.gpu_bench import gpu_probe, prepare_gpu, timed_graph

    graph = unary("Relu", 4096)
    timer = timed_graph(backends, graph, "relu")
    assert timer.plain is not None and timer.plain.query_pool is None  # walls come from runs without timestamps
    gate = Gate(extra_s=0.0)
    with gpu_probe(backends[0], gate):
        time_interleaved([timer], 0.05, 2, gate=gate)
    assert gate.probe.extra == {} and all(s["gpu"] > 0 for s in timer.states)  # the GPU's state was read
    assert len(timer.blocks) >= 2 and len(timer.kept) == len(timer.blocks)
    assert timer.fastest()[0] > 0 and timer.kernel_ms() > 0
    timer.close()
    for label, graph in calibration_graphs():
        exe = prepare_gpu(backends[0], graph)
        assert exe is not None, label
        exe.close()


def test_record_run_adds_run_samples(cache, measured):
    p = copy.deepcopy(measured)
    save_personality(p)
    g = conv(16, 14, 16, 3)
    stats = partition_op_stats(g, [op.name for op in g.ops], kernel_features(g, "cpu"))
    assert stats[0]["name"] == "op" and stats[0]["fused"] is False
    updated = record_run(None, [{"device": "cpu", "ms": 2.0, "ops": stats}])
    runs = [s for s in updated.samples("cpu") if s["source"] == "run"]
    assert len(runs) == 1 and runs[0]["ms"] == pytest.approx(
        2.0 - p.dispatch_ms("cpu") - p.device("cpu")["op_overhead_ms"]
    )
    assert sample_sources(read_personality(store_path(p.chip_id)))["cpu"]["run"] == 1
    with pytest.raises(PersonalityError, match="names device 'gpu'"):
        record_run(updated, [{"device": "gpu", "ms": 1.0, "ops": stats}])
    with pytest.raises(PersonalityError, match="target file"):
        record_run(load_personality("ryzen-7-7840u"), [])


def test_cli_show(cache, measured):
    runner = CliRunner()
    result = runner.invoke(main, ["profile", "--show"])
    assert result.exit_code != 0 and "run `ragc profile" in result.output
    save_personality(copy.deepcopy(measured))
    result = runner.invoke(main, ["profile", "--show"])
    assert result.exit_code == 0, result.output
    assert "samples came from recorded runs" in result.output and measured.chip_id in result.output
    result = runner.invoke(main, ["profile", "--show", "--target", "ryzen-ai-9-hx-370"])
    assert result.exit_code == 0 and "target-ryzen-ai-9-hx-370 (target)" in result.output


def test_in_context_op_times_credit_real_ops():
    from ragc.profiler.timers import op_ms

    graph = conv(16, 28, 16, 3)
    out = graph.outputs[0]
    graph.ops.append(Op("act", "Relu", [out], ["act_out"]))
    graph.ops.append(Op("norm", "LRN", ["act_out"], ["lrn_out"], {"size": 3}))
    graph.tensors |= {n: Tensor(n, graph.tensors[out].shape, "float32") for n in ("act_out", "lrn_out")}
    graph.outputs = ["lrn_out"]
    plain, with_layouts = op_ms(graph, 0.02), op_ms(graph, 0.02, layouts=True)
    assert set(plain) == set(with_layouts) == {"op", "norm"}  # the Relu runs inside the conv's kernel
    assert all(ms >= 0 for ms in plain.values())


def test_the_evaluation_prices_a_whole_model_as_a_compile_does():
    """End to end off the CPU: the launch, the ops, and the inputs' and outputs' hand-offs with their latency (with
    measured glue the GPU's launch is in that latency: leaving it out made every fast GPU model look short)."""
    from ragc.profiler.evaluate import end_to_end_ms
    from ragc.profiler.specs import unary

    dev = {"peak_gflops": 1.0, "peak_gbps": 1.0, "dispatch_ms": 0.3, "op_overhead_ms": 0.0, "memory_bytes": 1}
    glue = {
        "launch_ms": {"cpu": 0.1, "gpu": 0.0},
        "handoff": {p: {"latency_ms": 0.15, "gbps": 20.0} for p in ("cpu->gpu", "gpu->cpu")},
    }
    p = Personality(
        {"schema": SCHEMA, "chip_id": "x", "devices": {"cpu": dev, "gpu": dev}, "transfers": {}, "glue": glue}
    )
    graph = unary("Relu", 250_000)  # 1 MB in, 1 MB out
    ops = {op.name: 0.2 for op in graph.ops}
    assert end_to_end_ms(p, graph, "gpu", ops) == pytest.approx(0.0 + 0.2 + 2 * (0.15 + 1e6 / 20e6))
    assert end_to_end_ms(p, graph, "cpu", ops) == pytest.approx(0.1 + 0.2)
