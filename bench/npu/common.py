"""What the NPU bench scripts share: compiling a workload and reading `ragc simulate --json`, a rich progress bar,
and rewriting a generated region of docs/npu.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "npu.md"
RAGC = [sys.executable, "-m", "ragc.cli"]


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn()
    )


def compile_and_simulate(model: Path, plan: Path, target: str, *args: str) -> dict[str, Any]:
    """`ragc compile MODEL -o PLAN --target TARGET ARGS`, then `ragc simulate PLAN --json` (and the manifest)."""
    subprocess.run(
        [*RAGC, "compile", str(model), "-o", str(plan), "--target", target, *args],
        check=True,
        capture_output=True,
        text=True,
    )
    out = subprocess.run([*RAGC, "simulate", str(plan), "--json"], check=True, capture_output=True, text=True)
    simulated = json.loads(out.stdout)
    simulated["manifest"] = json.loads((plan / "manifest.json").read_text())
    return simulated


def device_span_ms(simulated: dict[str, Any], device: str) -> float:
    """From the first start to the last finish of the plan's partitions on `device`."""
    spans = [(p["start_ms"], p["finish_ms"]) for p in simulated["partitions"] if p["device"] == device]
    return max(f for _, f in spans) - min(s for s, _ in spans)


def write_region(name: str, text: str, doc: Path = DOC) -> None:
    """Replace what stands between `<!-- name:begin -->` and `<!-- name:end -->` in docs/npu.md with `text`."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    current = doc.read_text()
    if begin not in current or end not in current:
        raise SystemExit(f"{doc} has no {begin} ... {end} region; add one where the table goes")
    head, rest = current.split(begin, 1)
    doc.write_text(f"{head}{begin}\n{text.rstrip()}\n{end}{rest.split(end, 1)[1]}")
