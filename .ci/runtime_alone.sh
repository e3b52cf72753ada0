#!/usr/bin/env bash
# runtime_min as an app ships it: installed alone in a fresh venv (numpy + onnxruntime, no compiler), running a
# CPU plan the compiler wrote, from a folder where the repository is not importable.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/ragc compile examples/tinynet.onnx -o "$work/plan" --devices cpu --target ryzen-ai-9-hx-370 >/dev/null
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q "./runtime_min[cpu]"
cd "$work"
"$work/venv/bin/python" - <<'PY'
import importlib.util, sys
import numpy as np
import runtime_min
absent = [m for m in ("ragc", "codegen", "onnx", "onnx_graphsurgeon", "sklearn", "scipy", "jinja2", "click")
          if importlib.util.find_spec(m) is not None]
assert not absent, f"the runtime-only venv can import {absent}"
plan = runtime_min.load("plan")
feeds = {s.name: np.random.default_rng(0).random(s.shape).astype(s.dtype) for s in plan.inputs}
first, again = plan.run(feeds), plan.run(feeds)
assert all(first[k].tobytes() == again[k].tobytes() for k in first)
print(f"runtime-min {runtime_min.__version__} alone ran {len(plan.steps)} partition(s) from {runtime_min.__file__}")
PY
