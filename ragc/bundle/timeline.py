"""A placement as an SVG timeline: one lane per processor, a box per unit, an arrow per cross-device transfer."""

from __future__ import annotations

import math
from html import escape
from pathlib import Path

from ragc.placement.problem import Placement, PlacementProblem

LEFT, TOP, LANE, WIDTH = 90, 30, 44, 1000
COLORS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1")


def write_timeline_svg(placement: Placement, problem: PlacementProblem, path: str | Path) -> None:
    Path(path).write_text(timeline_svg(placement, problem), encoding="utf-8")


def timeline_svg(placement: Placement, problem: PlacementProblem) -> str:
    """The SVG text: deterministic for the same placement and problem."""
    canvas = _Canvas(placement, list(problem.devices))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{LEFT + WIDTH + 20}" height="{canvas.height}" '
        'font-family="sans-serif" font-size="11">',
        '<defs><marker id="arrow" markerWidth="6" markerHeight="6" refX="6" refY="3" orient="auto">'
        '<path d="M0,0 L6,3 L0,6 z" fill="#333"/></marker></defs>',
        f'<text x="{LEFT}" y="16">{escape(placement.solver)}: {placement.predicted_ms:.3f} ms predicted</text>',
    ]
    parts += canvas.lanes()
    parts += [canvas.unit(u.name) for u in problem.units]
    parts += [
        canvas.transfer(e.src, e.dst, e.nbytes, problem)
        for e in problem.edges
        if placement.assignment[e.src] != placement.assignment[e.dst]
    ]
    parts += canvas.axis()
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


class _Canvas:
    """Coordinates: ms -> x, device -> lane."""

    def __init__(self, placement: Placement, devices: list[str]) -> None:
        self.placement = placement
        self.lane = {d: k for k, d in enumerate(devices)}
        self.end = max([placement.predicted_ms, 1e-9] + list(placement.finish_ms.values()))
        self.scale = WIDTH / self.end
        self.axis_y = TOP + LANE * len(devices) + 4
        self.height = self.axis_y + 36

    def x(self, ms: float) -> float:
        return LEFT + ms * self.scale

    def mid(self, device: str) -> float:
        return TOP + self.lane[device] * LANE + LANE / 2 - 2

    def lanes(self) -> list[str]:
        out = []
        for d, k in self.lane.items():
            y = TOP + k * LANE
            out.append(f'<rect x="{LEFT}" y="{y}" width="{WIDTH}" height="{LANE - 4}" fill="#f4f4f4"/>')
            out.append(f'<text x="8" y="{self.mid(d) + 4:.1f}">{escape(d)}</text>')
        return out

    def unit(self, name: str) -> str:
        p = self.placement
        device, start, finish = p.assignment[name], p.start_ms[name], p.finish_ms[name]
        y = TOP + self.lane[device] * LANE + 4
        w = max((finish - start) * self.scale, 0.5)
        color = COLORS[self.lane[device] % len(COLORS)]
        box = (
            f'<rect x="{self.x(start):.2f}" y="{y}" width="{w:.2f}" height="{LANE - 12}" fill="{color}" '
            f'stroke="#222" stroke-width="0.5"><title>{escape(name)}: {start:.3f}..{finish:.3f} ms</title></rect>'
        )
        if w <= 7 * len(name):
            return box
        return box + f'<text x="{self.x(start) + 2:.2f}" y="{y + 18}" fill="#fff">{escape(name)}</text>'

    def transfer(self, src: str, dst: str, nbytes: int, problem: PlacementProblem) -> str:
        a, b = self.placement.assignment[src], self.placement.assignment[dst]
        t0 = self.placement.finish_ms[src]
        t1 = t0 + problem.transfer_ms(a, b, nbytes)
        return (
            f'<line x1="{self.x(t0):.2f}" y1="{self.mid(a):.1f}" x2="{self.x(t1):.2f}" y2="{self.mid(b):.1f}" '
            f'stroke="#333" stroke-width="0.8" marker-end="url(#arrow)"><title>{escape(src)} -&gt; '
            f"{escape(dst)}: {nbytes} B, {t1 - t0:.3f} ms</title></line>"
        )

    def axis(self) -> list[str]:
        y = self.axis_y
        out = [f'<line x1="{LEFT}" y1="{y}" x2="{LEFT + WIDTH}" y2="{y}" stroke="#000"/>']
        step = _tick_step(self.end)
        for k in range(int(self.end / step + 1e-9) + 1):
            tx = self.x(k * step)
            out.append(f'<line x1="{tx:.2f}" y1="{y}" x2="{tx:.2f}" y2="{y + 5}" stroke="#000"/>')
            out.append(f'<text x="{tx:.2f}" y="{y + 18}" text-anchor="middle">{k * step:.6g} ms</text>')
        return out


def _tick_step(end: float) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving at most about ten ticks."""
    raw = end / 10
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
