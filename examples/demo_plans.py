"""The demo's two plans of examples/tinynet.onnx for the Ryzen AI 9 HX 370, side by side: automatic placement, and
the forced three-processor plan of `make demo` (--place Gemm=npu --place Conv=gpu). Both are cross-compiled from the
target file, so every figure is a prediction; nothing runs. Writes docs/results/<date>-demo-plans.json.

    .venv/bin/python examples/demo_plans.py
"""

from __future__ import annotations

import datetime
import json
import tempfile
from pathlib import Path

from ragc.pipeline import compile_model
from ragc.version import VERSION

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "examples" / "tinynet.onnx"
TARGET = "ryzen-ai-9-hx-370"
PLANS = {"automatic": [], "forced three-processor": ["Gemm=npu", "Conv=gpu"]}


def plan_figures(folder: Path, place: list[str]) -> dict:
    bundle = compile_model(MODEL, folder, target=TARGET, place=place).bundle
    manifest = json.loads((bundle / "manifest.json").read_text())
    schedule = json.loads((bundle / "schedule.json").read_text())
    command = " ".join(
        ["ragc compile examples/tinynet.onnx -o plan --target", TARGET, *(f"--place {p}" for p in place)]
    )
    return {
        "command": command,
        "predicted_ms": manifest["predicted_ms"],
        "energy_mj": manifest.get("energy_mj"),
        "partitions": [[p["id"], p["device"], len(p["ops"]), p["predicted_ms"]] for p in schedule["partitions"]],
        "transfers": len(schedule["transfers"]),
    }


def main() -> Path:
    today = datetime.date.today().isoformat()
    with tempfile.TemporaryDirectory() as tmp:
        plans = {name: plan_figures(Path(tmp) / str(k), place) for k, (name, place) in enumerate(PLANS.items())}
    auto, forced = plans["automatic"]["predicted_ms"], plans["forced three-processor"]["predicted_ms"]
    result = {
        "date": today,
        "what": "predicted, not measured: both plans cross-compiled from the target file; nothing ran",
        "ragc_version": VERSION,
        "model": "examples/tinynet.onnx",
        "target": TARGET,
        "plans": plans,
        "forced_over_automatic": round(forced / auto, 2),
    }
    path = ROOT / "docs" / "results" / f"{today}-demo-plans.json"
    path.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return path


if __name__ == "__main__":
    print(f"wrote {main()}")
