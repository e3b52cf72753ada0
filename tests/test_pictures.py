"""The pictures: the timeline shows every transfer on a lane of its own and, for throughput plans, frames moving
through the pipeline stages."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ragc.bundle.timeline import FRAMES, timeline_svg
from ragc.placement import Edge, PlacementProblem, Unit, solve

NS = "{http://www.w3.org/2000/svg}"


def chain() -> PlacementProblem:
    """a -> b -> c, a and c fastest on the CPU, b on the GPU, with transfers that cost something."""
    units = [Unit("a", ["a"], {"cpu": 1.0, "gpu": 4.0}), Unit("b", ["b"], {"cpu": 5.0, "gpu": 1.0}),
             Unit("c", ["c"], {"cpu": 1.0, "gpu": 4.0})]  # fmt: skip
    edges = [Edge("a", "b", 4096), Edge("b", "c", 4096)]
    return PlacementProblem(units, edges, ["cpu", "gpu"], lambda s, t, n: 0.0 if s == t else 0.2 + n * 1e-5)


def titles(svg: str) -> list[str]:
    return [t.text for t in ET.fromstring(svg).iter(f"{NS}title")]


def test_transfers_have_a_lane_of_their_own():
    problem = chain()
    plan = solve(problem, "ilp")
    assert plan.assignment == {"a": "cpu", "b": "gpu", "c": "cpu"}
    svg = timeline_svg(plan, problem)
    moves = [t for t in titles(svg) if "cpu -&gt; gpu" in t or "cpu -> gpu" in t or "gpu -> cpu" in t]
    assert len(moves) >= 2 and any("4.0 KB" in t for t in moves)
    assert "transfers" in [t.text for t in ET.fromstring(svg).iter(f"{NS}text")]


def test_throughput_plans_show_frames_through_the_stages():
    problem = chain()
    plan = solve(problem, objective="throughput")
    assert plan.stages and len(plan.stages) >= 2
    frames = [t for t in titles(timeline_svg(plan, problem)) if t.startswith("frame ")]
    assert len(frames) == FRAMES * len([s for s in plan.stages if s])
    starts = sorted(float(t.split(": ")[1].split("..")[0]) for t in frames if ", stage 0 " in t)
    period = starts[1] - starts[0]
    assert period > 0 and all(abs((b - a) - period) < 1e-6 for a, b in zip(starts, starts[1:], strict=False))
