"""A placement as an SVG timeline: one lane per processor with a box per unit, a transfers lane with a box (and an
arrow between lanes) per tensor crossing processors, and for throughput plans the steady state: frames moving
through the pipeline stages, one period apart."""

from __future__ import annotations

import math
from html import escape
from pathlib import Path

from ragc.placement.problem import HOST, Placement, PlacementProblem

LEFT, TOP, LANE, WIDTH, SUB = 90, 30, 44, 1000, 14
PROCESSOR_COLORS = {"cpu": "#4e79a7", "gpu": "#59a14f", "npu": "#e15759"}  # also ragc explain --svg
TRANSFER_COLOR = "#f28e2b"
FRAMES = 4  # frames drawn through a pipeline


def write_timeline_svg(placement: Placement, problem: PlacementProblem, path: str | Path) -> None:
    Path(path).write_text(timeline_svg(placement, problem), encoding="utf-8")


def timeline_svg(placement: Placement, problem: PlacementProblem) -> str:
    """The SVG text: deterministic for the same placement and problem."""
    transfers = [
        (e, placement.finish_ms[e.src], placement.finish_ms[e.src] + problem.transfer_ms(a, b, e.nbytes))
        for e in problem.edges
        if (a := placement.assignment[e.src]) != (b := placement.assignment[e.dst])
    ]
    canvas = _Canvas(placement, list(problem.devices), _rows(transfers))
    parts = [
        '<defs><marker id="arrow" markerWidth="6" markerHeight="6" refX="6" refY="3" orient="auto">'
        '<path d="M0,0 L6,3 L0,6 z" fill="#333"/></marker></defs>',
        f'<text x="{LEFT}" y="16">{escape(placement.solver)}: {placement.predicted_ms:.3f} ms predicted'
        f"{' (slowest pipeline stage)' if placement.stages else ''}; {len(transfers)} transfer(s)</text>",
    ]
    parts += canvas.lanes()
    parts += [canvas.unit(u.name) for u in problem.units]
    for (edge, t0, t1), row in zip(transfers, canvas.transfer_rows, strict=True):
        parts += canvas.transfer(edge.src, edge.dst, edge.nbytes, t0, t1, row)
    parts += canvas.axis()
    height = canvas.height
    if placement.stages:
        pipeline = _Pipeline(placement, problem, height)
        parts += pipeline.draw()
        height = pipeline.height
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{LEFT + WIDTH + 20}" height="{height}" '
        'font-family="sans-serif" font-size="11">'
    )
    return "\n".join([head, *parts, "</svg>"]) + "\n"


def _rows(transfers: list[tuple[object, float, float]]) -> list[int]:
    """A sub-row of the transfers lane per transfer, so that overlapping transfers do not cover each other."""
    ends: list[float] = []
    rows = []
    for _, t0, t1 in transfers:
        row = next((k for k, end in enumerate(ends) if end <= t0), len(ends))
        if row == len(ends):
            ends.append(t1)
        ends[row] = t1
        rows.append(row)
    return rows


class _Canvas:
    """Coordinates: ms -> x, device -> lane; the transfers lane under the processors."""

    def __init__(self, placement: Placement, devices: list[str], transfer_rows: list[int]) -> None:
        self.placement = placement
        self.lane = {d: k for k, d in enumerate(devices)}
        self.transfer_rows = transfer_rows
        self.end = max([placement.predicted_ms, 1e-9] + list(placement.finish_ms.values()))
        self.scale = WIDTH / self.end
        self.transfer_top = TOP + LANE * len(devices)
        transfer_height = (max(transfer_rows) + 1) * SUB + 8 if transfer_rows else 0
        self.axis_y = self.transfer_top + transfer_height + 4
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
        if self.transfer_rows:
            out.append(f'<text x="8" y="{self.transfer_top + 12}">transfers</text>')
        return out

    def unit(self, name: str) -> str:
        p = self.placement
        device, start, finish = p.assignment[name], p.start_ms[name], p.finish_ms[name]
        y = TOP + self.lane[device] * LANE + 4
        w = max((finish - start) * self.scale, 0.5)
        color = PROCESSOR_COLORS.get(device, "#888")
        box = (
            f'<rect x="{self.x(start):.2f}" y="{y}" width="{w:.2f}" height="{LANE - 12}" fill="{color}" '
            f'stroke="#222" stroke-width="0.5"><title>{escape(name)}: {start:.3f}..{finish:.3f} ms</title></rect>'
        )
        if w <= 7 * len(name):
            return box
        return box + f'<text x="{self.x(start) + 2:.2f}" y="{y + 18}" fill="#fff">{escape(name)}</text>'

    def transfer(self, src: str, dst: str, nbytes: int, t0: float, t1: float, row: int) -> list[str]:
        """The transfer as a box on the transfers lane (at least 2 px wide) and an arrow between the lanes."""
        a, b = self.placement.assignment[src], self.placement.assignment[dst]
        tip = f"{escape(src)} -&gt; {escape(dst)}: {a} -&gt; {b}, {_bytes(nbytes)}, {t1 - t0:.3f} ms"
        y = self.transfer_top + 4 + row * SUB
        w = max((t1 - t0) * self.scale, 2.0)
        label = f"{a}→{b} {_bytes(nbytes)}"
        text = f'<text x="{self.x(t0) + 2:.2f}" y="{y + 10}" font-size="9">{label}</text>' if w > 6 * len(label) else ""
        return [
            f'<g><title>{tip}</title><rect x="{self.x(t0):.2f}" y="{y}" width="{w:.2f}" height="{SUB - 3}" '
            f'fill="{TRANSFER_COLOR}"/>{text}</g>',
            f'<line x1="{self.x(t0):.2f}" y1="{self.mid(a):.1f}" x2="{self.x(t1):.2f}" y2="{self.mid(b):.1f}" '
            f'stroke="#333" stroke-width="1.2" marker-end="url(#arrow)"><title>{tip}</title></line>',
        ]

    def axis(self) -> list[str]:
        return _axis(self.axis_y, self.end, self.x)


class _Pipeline:
    """Throughput plans: FRAMES frames through the stages, stage k of frame f starting at (f + k) periods."""

    def __init__(self, placement: Placement, problem: PlacementProblem, top: float) -> None:
        self.placement, self.problem = placement, problem
        self.devices = list(problem.devices)
        self.top = top + 24
        self.period = max(placement.predicted_ms, 1e-9)
        self.end = self.period * (FRAMES + len(placement.stages) - 1)
        self.scale = WIDTH / self.end
        self.axis_y = self.top + LANE * len(self.devices) + 4
        self.height = int(self.axis_y + 36)

    def x(self, ms: float) -> float:
        return LEFT + ms * self.scale

    def stage_ms(self, stage: list[str]) -> float:
        """A stage's time: its units on its processor, their graph inputs and outputs to and from the host, and the
        tensors it reads from earlier stages."""
        inside = set(stage)
        device = self.placement.assignment[stage[0]]
        move = self.problem.transfer_ms
        units = [self.problem.unit(u) for u in stage]
        own = sum(u.cost_ms[device] + move(HOST, device, u.host_in_bytes) + move(device, HOST, u.host_out_bytes)
                  for u in units)  # fmt: skip
        incoming = sum(
            self.problem.transfer_ms(self.placement.assignment[e.src], device, e.nbytes)
            for e in self.problem.edges
            if e.dst in inside and e.src not in inside
        )
        return own + incoming

    def draw(self) -> list[str]:
        out = [f'<text x="{LEFT}" y="{self.top - 8}">steady state: {FRAMES} frames through '
               f"{len(self.placement.stages)} stages, one every {self.period:.3f} ms</text>"]  # fmt: skip
        for k, d in enumerate(self.devices):
            y = self.top + k * LANE
            out.append(f'<rect x="{LEFT}" y="{y}" width="{WIDTH}" height="{LANE - 4}" fill="#f4f4f4"/>')
            out.append(f'<text x="8" y="{y + LANE / 2 + 2:.1f}">{escape(d)}</text>')
        for k, stage in enumerate(s for s in self.placement.stages if s):
            device = self.placement.assignment[stage[0]]
            ms = self.stage_ms(stage)
            y = self.top + self.devices.index(device) * LANE + 4
            for f in range(FRAMES):
                start = (f + k) * self.period
                opacity = 1.0 - 0.18 * f
                out.append(
                    f"<g><title>frame {f}, stage {k} on {device}: {start:.3f}..{start + ms:.3f} ms</title>"
                    f'<rect x="{self.x(start):.2f}" y="{y}" width="{max(ms * self.scale, 0.5):.2f}" '
                    f'height="{LANE - 12}" fill="{PROCESSOR_COLORS.get(device, "#888")}" fill-opacity="{opacity:.2f}" '
                    f'stroke="#222" stroke-width="0.5"/>'
                    f'<text x="{self.x(start) + 2:.2f}" y="{y + 18}" fill="#fff">f{f} s{k}</text></g>'
                )
        return out + _axis(self.axis_y, self.end, self.x)


def _axis(y: float, end: float, x) -> list[str]:
    out = [f'<line x1="{LEFT}" y1="{y}" x2="{LEFT + WIDTH}" y2="{y}" stroke="#000"/>']
    step = _tick_step(end)
    for k in range(int(end / step + 1e-9) + 1):
        tx = x(k * step)
        out.append(f'<line x1="{tx:.2f}" y1="{y}" x2="{tx:.2f}" y2="{y + 5}" stroke="#000"/>')
        out.append(f'<text x="{tx:.2f}" y="{y + 18}" text-anchor="middle">{k * step:.6g} ms</text>')
    return out


def _bytes(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.1f} KB" if n >= 2**10 else f"{n} B"


def _tick_step(end: float) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving at most about ten ticks."""
    raw = end / 10
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
