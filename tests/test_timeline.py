"""The SVG timeline of a placement."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from ragc.bundle.timeline import timeline_svg, write_timeline_svg
from ragc.placement import Edge, PlacementProblem, Unit, solve

NS = {"svg": "http://www.w3.org/2000/svg"}


def fork() -> PlacementProblem:
    """a -> (b, c) -> d with b and c as fast on either device, so the plan runs them side by side."""
    both = {"cpu": 2.0, "gpu": 2.0}
    units = [
        Unit("a", ["a"], {"cpu": 1.0, "gpu": 3.0}),
        Unit("b", ["b"], dict(both)),
        Unit("c", ["c"], dict(both)),
        Unit("d", ["d"], {"cpu": 1.0, "gpu": 3.0}, host_out_bytes=4),
    ]
    edges = [Edge("a", "b", 8), Edge("a", "c", 8), Edge("b", "d", 8), Edge("c", "d", 8)]
    return PlacementProblem(units, edges, ["cpu", "gpu"], lambda s, t, n: 0.0 if s == t else 0.25)


def test_timeline_has_a_lane_per_device_a_box_per_unit_and_transfer_arrows(tmp_path: Path) -> None:
    problem = fork()
    plan = solve(problem, solver="ilp")
    assert set(plan.assignment.values()) == {"cpu", "gpu"}
    path = tmp_path / "plan.svg"
    write_timeline_svg(plan, problem, path)
    root = ET.parse(path).getroot()
    texts = [t.text for t in root.iter(f"{{{NS['svg']}}}text")]
    assert "cpu" in texts and "gpu" in texts and any(t and t.endswith(" ms") for t in texts)
    boxes = [r for r in root.iter(f"{{{NS['svg']}}}rect") if r.find("svg:title", NS) is not None]
    assert sorted(r.find("svg:title", NS).text.split(":")[0] for r in boxes) == ["a", "b", "c", "d"]
    crossing = sum(plan.assignment[e.src] != plan.assignment[e.dst] for e in problem.edges)
    arrows = [line for line in root.iter(f"{{{NS['svg']}}}line") if line.get("marker-end")]
    assert len(arrows) == crossing > 0
    widths = {r.find("svg:title", NS).text.split(":")[0]: float(r.get("width")) for r in boxes}
    assert widths["b"] == widths["c"] > widths["a"]


def test_timeline_is_deterministic() -> None:
    problem = fork()
    assert timeline_svg(solve(problem), problem) == timeline_svg(solve(problem), problem)
