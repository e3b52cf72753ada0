"""`ragc explain --svg`: the op graph as an SVG picture, each op a box coloured by the processor it runs on, top to
bottom in dependency layers; an edge between processors is drawn thick and dashed (a transfer). Deterministic."""

from __future__ import annotations

from html import escape
from typing import Any

from ragc.bundle.timeline import PROCESSOR_COLORS

BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN, HEADER = 150, 30, 20, 26, 20, 60
LABEL_CHARS = 22
MIN_WIDTH = 560  # room for the title and the legend


def layers(ops: list[dict[str, Any]]) -> dict[str, int]:
    """Op -> its layer: one below the deepest op it reads (ops are in topological order)."""
    layer: dict[str, int] = {}
    for op in ops:
        layer[op["name"]] = 1 + max((layer[r] for r in op["reads"]), default=-1)
    return layer


def graph_svg(doc: dict[str, Any], title: str) -> str:
    """The picture of a checked costs.json document."""
    ops = doc["ops"]
    device = {name: u["device"] for u in doc["units"] for name in u["ops"]}
    layer = layers(ops)
    rows: dict[int, list[str]] = {}
    for op in ops:
        rows.setdefault(layer[op["name"]], []).append(op["name"])
    widest = max((len(r) for r in rows.values()), default=1)
    width = max(2 * MARGIN + widest * (BOX_W + GAP_X), MIN_WIDTH)
    height = HEADER + MARGIN + len(rows) * (BOX_H + GAP_Y)
    place: dict[str, tuple[float, float]] = {}
    for k, names in rows.items():
        left = (width - len(names) * (BOX_W + GAP_X) + GAP_X) / 2
        for i, name in enumerate(names):
            place[name] = (left + i * (BOX_W + GAP_X), HEADER + k * (BOX_H + GAP_Y))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        'font-family="sans-serif" font-size="11">',
        f'<text x="{MARGIN}" y="18" font-size="13">{escape(title)}: {len(ops)} ops by processor</text>',
    ]
    parts += _legend(device)
    for op in ops:
        for src in op["reads"]:
            parts.append(_edge(place[src], place[op["name"]], device[src], device[op["name"]], src, op["name"]))
    for op in ops:
        parts.append(_box(op, place[op["name"]], device[op["name"]]))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _legend(device: dict[str, str]) -> list[str]:
    out, x = [], MARGIN
    for processor, color in PROCESSOR_COLORS.items():
        count = sum(1 for d in device.values() if d == processor)
        if count:
            out.append(f'<rect x="{x}" y="28" width="14" height="14" fill="{color}"/>')
            out.append(f'<text x="{x + 18}" y="39">{processor} ({count} op{"s" if count != 1 else ""})</text>')
            x += 120
    return out


def _edge(a: tuple[float, float], b: tuple[float, float], da: str, db: str, src: str, dst: str) -> str:
    """A line to the next layer; an edge skipping layers bows out to the right of the boxes it passes."""
    x1, y1, x2, y2 = a[0] + BOX_W / 2, a[1] + BOX_H, b[0] + BOX_W / 2, b[1]
    style = 'stroke="#222" stroke-width="2.2" stroke-dasharray="5,3"' if da != db else 'stroke="#999" stroke-width="1"'
    what = f"transfer {da} -&gt; {db}" if da != db else da
    bow = 0.0 if y2 - y1 <= GAP_Y + 1 else BOX_W * 0.75
    path = f"M{x1:.1f},{y1:.1f} C{x1 + bow:.1f},{y1 + GAP_Y:.1f} {x2 + bow:.1f},{y2 - GAP_Y:.1f} {x2:.1f},{y2:.1f}"
    return f'<path d="{path}" fill="none" {style}><title>{escape(src)} -&gt; {escape(dst)} ({what})</title></path>'


def _box(op: dict[str, Any], at: tuple[float, float], device: str) -> str:
    x, y = at
    name = op["name"] if len(op["name"]) <= LABEL_CHARS else op["name"][: LABEL_CHARS - 1] + "…"
    ms = op["ms"].get(device)
    tip = f"{op['name']} ({op['op_type']}) on {device}" + ("" if ms is None else f": {ms:.4f} ms predicted")
    return (
        f"<g><title>{escape(tip)}</title>"
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{BOX_W}" height="{BOX_H}" rx="4" fill="{PROCESSOR_COLORS[device]}"/>'
        f'<text x="{x + 5:.1f}" y="{y + 13:.1f}" fill="#fff">{escape(name)}</text>'
        f'<text x="{x + 5:.1f}" y="{y + 25:.1f}" fill="#fff" font-size="9">{escape(op["op_type"])}</text></g>'
    )
