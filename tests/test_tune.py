"""Candidate plans timed on the chip: the measured best kept, a boundary only where it pays beyond the confidence
interval, timings kept in the personality (a recompile reads them: byte-identical bundle, nothing timed again),
never for a cross-compile or with --no-tune."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from ragc.personality.chip import chip_facts, chip_id
from ragc.personality.store import Personality, save_personality, store_path
from ragc.pipeline import compile_model
from ragc.placement.candidates import Candidate
from ragc.placement.problem import Placement
from ragc.profiler import tune as tuning
from ragc.targets import load_target

TINYNET = Path(__file__).resolve().parent.parent / "examples" / "tinynet.onnx"
pytestmark = pytest.mark.filterwarnings("ignore")


def _candidate(name: str, assignment: dict[str, str], predicted: float) -> Candidate:
    return Candidate(name, Placement(assignment, predicted, name))


def test_a_split_must_beat_a_simpler_plan_beyond_the_confidence_interval():
    single = _candidate("gpu-first", {"a": "gpu", "b": "gpu"}, 2.0)
    mixed = _candidate("solver", {"a": "cpu", "b": "gpu"}, 1.0)
    close = {"solver": {"ms": 0.99, "se_ms": 0.02}, "gpu-first": {"ms": 1.00, "se_ms": 0.02}}
    assert tuning.choose([mixed, single], close).name == "gpu-first"
    clear = {"solver": {"ms": 0.80, "se_ms": 0.02}, "gpu-first": {"ms": 1.00, "se_ms": 0.02}}
    assert tuning.choose([mixed, single], clear).name == "solver"


def test_ties_go_to_the_lower_prediction_then_the_fixed_order():
    a, b = _candidate("a", {"x": "gpu"}, 2.0), _candidate("b", {"x": "cpu"}, 1.0)
    same = {"a": {"ms": 1.0, "se_ms": 0.1}, "b": {"ms": 1.0, "se_ms": 0.1}}
    assert tuning.choose([a, b], same).name == "b"
    c = _candidate("c", {"x": "npu"}, 1.0)
    assert tuning.choose([b, c], {"b": same["b"], "c": same["b"]}).name == "b"


@pytest.fixture
def this_chip(tmp_path, monkeypatch):
    """This chip's stored personality: the HX 370 target's figures under this chip's id, CPU and (lavapipe) GPU."""
    pytest.importorskip("vulkan")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = copy.deepcopy(load_target("ryzen-ai-9-hx-370"))
    data.update(kind="personality", chip_id=chip_id(chip_facts()), chip=chip_facts())
    data["devices"].pop("npu")
    data.pop("npu", None)
    personality = Personality(data)
    save_personality(personality, store_path(personality.chip_id))
    return store_path(personality.chip_id)


def _tree(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_tuning_keeps_a_measured_candidate_and_remembers_it(this_chip, tmp_path, monkeypatch):
    first = compile_model(TINYNET, tmp_path / "a", tune_budget_s=2.0).bundle
    manifest = json.loads((first / "manifest.json").read_text())
    names = [c["name"] for c in manifest["candidates"]]
    assert len(names) >= 2 and names[0] == "solver" and manifest["chosen"] in names
    assert all(c["measured_ms"] > 0 for c in manifest["candidates"])
    assert manifest["measured_ms"] == min(
        c["measured_ms"] for c in manifest["candidates"] if c["name"] == manifest["chosen"]
    )
    stored = json.loads(this_chip.read_text())["tuning"]
    assert len(stored) == len(names) and all(t["objective"] == "latency" for t in stored.values())

    def never(*args, **kwargs):
        raise AssertionError("timed again although the personality holds every candidate's timing")

    monkeypatch.setattr(tuning, "_time", never)
    again = compile_model(TINYNET, tmp_path / "b", tune_budget_s=2.0).bundle
    assert _tree(first) == _tree(again)


def test_no_tune_and_cross_compiles_time_nothing(this_chip, tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("timed")

    monkeypatch.setattr(tuning, "_time", never)
    plain = json.loads((compile_model(TINYNET, tmp_path / "a", tune=False).bundle / "manifest.json").read_text())
    assert "measured_ms" not in plain and all(c["measured_ms"] is None for c in plain["candidates"])
    cross = compile_model(TINYNET, tmp_path / "b", target="ryzen-ai-9-hx-370").bundle
    assert "measured_ms" not in json.loads((cross / "manifest.json").read_text())


def test_the_plan_kept_last_time_stays_a_candidate(this_chip, tmp_path):
    from ragc.placement.candidates import candidates
    from ragc.placement.problem import Edge, PlacementProblem, Unit

    units = [Unit("a", ["a"], {"cpu": 1.0, "gpu": 0.5}), Unit("b", ["b"], {"cpu": 1.0, "gpu": 0.5})]
    problem = PlacementProblem(units, [Edge("a", "b", 1000)], ["cpu", "gpu"], lambda s, d, n: 0.1)
    odd = {"a": "gpu", "b": "cpu"}
    found = candidates(problem, tuning_free_solve(problem), "latency", 1.0, odd)
    assert found[-1].name == "previous" and found[-1].placement.assignment == odd
    same = candidates(problem, tuning_free_solve(problem), "latency", 1.0, {"a": "gpu", "b": "gpu"})
    assert "previous" not in [c.name for c in same]  # equal to gpu-first: that name stays


def test_stream_candidates_move_the_cut_and_are_priced_with_the_real_predictions():
    """efficientnet_b0 on the H200 (2026-12-04): the profile predicted its CPU 30 % slow, so the exact pipeline was the
    GPU alone (1.04x); candidates solved as if a processor were 0.7x or 1.4x its prediction cut elsewhere."""
    from ragc.placement import solve
    from ragc.placement.candidates import STAGE_ERRORS, candidates
    from ragc.placement.model import build_model
    from ragc.placement.problem import Edge, PlacementProblem, Unit
    from ragc.placement.throughput import repriced

    units = [Unit(f"u{i}", [f"u{i}"], {"cpu": 2.6, "gpu": 1.0}) for i in range(6)]
    edges = [Edge(f"u{i}", f"u{i + 1}", 1000) for i in range(5)]
    problem = PlacementProblem(units, edges, ["cpu", "gpu"], lambda s, d, n: 0.0 if s == d else 0.05)
    chosen = solve(problem, "auto", "throughput")
    found = candidates(problem, chosen, "throughput", 1.0, None)
    shifted = [c for c in found if c.name.startswith("stream-")]
    assert shifted and len(found) == len({str(sorted(c.placement.assignment.items())) for c in found})
    for cand in shifted:
        again = repriced(build_model(problem), cand.placement)
        assert cand.placement.predicted_ms == pytest.approx(again.predicted_ms)
        assert cand.placement.predicted_ms >= chosen.predicted_ms - 1e-9  # the optimum stays the optimum
        assert cand.placement.stages and sum(map(len, cand.placement.stages)) == 6
    assert {c.name for c in shifted} <= {f"stream-{d}-x{f}" for d in ("cpu", "gpu") for f in STAGE_ERRORS}


def tuning_free_solve(problem):
    from ragc.placement import solve

    return solve(problem, "auto", "latency", 1.0)


def test_throughput_plans_are_timed_as_streams(this_chip, tmp_path):
    bundle = compile_model(TINYNET, tmp_path / "t", objective="throughput", tune_budget_s=2.0).bundle
    manifest = json.loads((bundle / "manifest.json").read_text())
    stored = json.loads(this_chip.read_text())["tuning"].values()
    assert manifest["chosen"] and all(t["objective"] == "throughput" for t in stored)
    assert all(c["measured_ms"] > 0 for c in manifest["candidates"])
