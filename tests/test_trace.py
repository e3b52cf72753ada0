"""Traces: Chrome/Perfetto JSON with a track per processor, a slice per step, flows for tensors crossing
processors, GPU kernel timestamps nested in their step and simulated NPU time labelled as such."""

from __future__ import annotations

import json

import numpy as np
import pytest
from executor_plans import feeds, load_quiet, spread, three_processor_plan

import runtime_min

pytest_plugins = ["executor_fixtures"]  # the shared `chain` and `wants` fixtures


def _events(path) -> list[dict]:
    data = json.loads(path.read_text())
    assert data["displayTimeUnit"] == "ms"
    return data["traceEvents"]


def _track_names(events) -> dict[int, str]:
    return {e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}


def _steps(events) -> list[dict]:
    return [e for e in events if e["ph"] == "X" and e["cat"] == "step"]


def test_run_trace_has_tracks_steps_and_flows(chain, tmp_path):
    bundle = spread(chain, tmp_path / "s", {"p1": "npu", "p2": "npu"})
    with load_quiet(bundle) as plan:
        plan.run(feeds(), trace=tmp_path / "t.json")
    events = _events(tmp_path / "t.json")
    tracks = _track_names(events)
    assert sorted(tracks) == [1, 2]
    assert tracks[1].startswith("cpu (onnxruntime") and tracks[2].startswith("npu on the CPU fallback: cpu")
    steps = {e["name"]: e for e in _steps(events)}
    assert sorted(steps) == ["p0", "p1", "p2", "p3"]
    assert {k: steps[k]["tid"] for k in steps} == {"p0": 1, "p1": 2, "p2": 2, "p3": 1}
    args = dict(steps["p1"]["args"])
    predicted = args.pop("predicted_ms")
    assert args == {"partition": "p1", "ops": 1, "device": "cpu", "processor": "npu", "frame": 0}
    assert predicted is None or predicted >= 0
    assert all(e["dur"] >= 0 and e["ts"] >= 0 for e in steps.values())
    flows = [e for e in events if e["ph"] in ("s", "f")]
    # p0 -> p1 crosses from cpu to npu, p2 -> p3 back: one start and one finish each, in pairs
    assert [(e["ph"], e["name"], e["tid"]) for e in flows] == [
        ("s", "t0", 1),
        ("f", "t0", 2),
        ("s", "t2", 2),
        ("f", "t2", 1),
    ]
    assert flows[0]["id"] == flows[1]["id"] != flows[2]["id"] == flows[3]["id"]
    assert steps["p0"]["ts"] <= flows[0]["ts"] <= steps["p0"]["ts"] + steps["p0"]["dur"] <= flows[1]["ts"]


def test_stream_trace_has_every_frame(chain, tmp_path):
    bundle = spread(chain, tmp_path / "s", {"p2": "npu", "p3": "npu"})
    with load_quiet(bundle) as plan:
        outputs = list(plan.stream((feeds(s) for s in range(5)), depth=2, trace=tmp_path / "t.json"))
    assert len(outputs) == 5
    steps = _steps(_events(tmp_path / "t.json"))
    assert sorted((e["args"]["frame"], e["name"]) for e in steps) == [(f, f"p{k}") for f in range(5) for k in range(4)]


def test_gpu_kernels_nest_in_their_step_and_npu_time_is_labelled_simulated(tmp_path):
    bundle = three_processor_plan(tmp_path / "three")
    with runtime_min.load(bundle, npu="sim", timestamps=True) as plan:
        x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
        plan.run({"x": x}, trace=tmp_path / "t.json")
        gpu_missing = plan.fallbacks.get("gpu")
    events = _events(tmp_path / "t.json")
    tracks = _track_names(events)
    simulated = [e for e in events if e.get("cat") == "simulated"]
    assert simulated and all(e["name"].startswith("simulated: ") and e["args"]["simulated"] for e in simulated)
    assert tracks[simulated[0]["tid"]] == "npu (simulated clock)"
    assert any(e["name"].startswith("simulated: fc:") for e in simulated)
    if gpu_missing:
        pytest.skip(f"no Vulkan device here, so no GPU timestamps ({gpu_missing})")
    step = next(e for e in _steps(events) if e["args"]["device"] == "gpu")
    kernels = [e for e in events if e.get("cat") == "kernel"]
    assert {e["name"] for e in kernels} >= {"conv1", "conv2"}
    assert all(e["tid"] == step["tid"] and not e["args"]["simulated"] for e in kernels)
    assert all(step["ts"] <= e["ts"] and e["ts"] + e["dur"] <= step["ts"] + step["dur"] + 1e-3 for e in kernels)
