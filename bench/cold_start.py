"""Cold start of a GPU plan (issue 15: load + first run at most 500 ms in a fresh process, 150 ms on a second load
with the Vulkan pipeline cache in place): resnet50 (the onnx light zoo's, or torchvision's where torch is
installed) compiled GPU-first, then loaded and run once in fresh processes: the first with an empty user cache, the
later ones with the pipeline cache the first left. Prints a markdown table; --json for the raw figures.

    python bench/cold_start.py [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHILD = r"""
import time, json, sys
t0 = time.perf_counter()
import numpy as np
import runtime_min
t1 = time.perf_counter()
plan = runtime_min.load(sys.argv[1])
t2 = time.perf_counter()
feeds = {s.name: np.zeros(s.shape, s.dtype) for s in plan.inputs}
plan.run(feeds)
t3 = time.perf_counter()
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "load_ms": (t2 - t1) * 1e3, "first_run_ms": (t3 - t2) * 1e3,
                  "gpu": plan.tracks().get("gpu", "none"), "fallbacks": plan.fallbacks}))
"""


def model_path(folder: Path) -> Path:
    try:
        import torch
        import torchvision

        path = folder / "resnet50.onnx"
        net = torchvision.models.resnet50().eval()
        torch.onnx.export(net, torch.zeros(1, 3, 224, 224), str(path), opset_version=17, dynamo=False)
        return path
    except ImportError:
        import onnx

        return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_resnet50.onnx"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from ragc.pipeline import compile_model

    with tempfile.TemporaryDirectory() as tmp:
        model = model_path(Path(tmp))
        plan = compile_model(model, Path(tmp) / "plan", devices="gpu", target="ryzen-ai-9-hx-370").bundle
        cache = Path(tmp) / "cache"  # the runtime's user cache: empty for the first process
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # keep the caller's
        env = {**os.environ, "XDG_CACHE_HOME": str(cache), "PYTHONPATH": path}
        rows = []
        for i in range(1 + args.repeat):
            out = subprocess.run([sys.executable, "-c", CHILD, str(plan)], capture_output=True, text=True, env=env)
            if out.returncode != 0:
                sys.exit(f"child failed: {out.stderr.strip().splitlines()[-1]}")
            row = json.loads(out.stdout.strip().splitlines()[-1])
            if row["fallbacks"]:  # a CPU fallback times the wrong thing: refuse rather than print it
                sys.exit(f"child fell back to the CPU ({row['fallbacks']}); fix its environment")
            row["process"] = "fresh cache" if i == 0 else f"cached ({i})"
            row["load_and_first_run_ms"] = row["load_ms"] + row["first_run_ms"]
            rows.append(row)
    if args.json:
        print(json.dumps({"model": model.name, "rows": rows}, indent=1))
        return
    print(f"model {model.name}, GPU: {rows[0]['gpu']}")
    print("| process | import ms | load ms | first run ms | load + first run ms |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        cells = [f"{r[k]:.1f}" for k in ("import_ms", "load_ms", "first_run_ms", "load_and_first_run_ms")]
        print(f"| {r['process']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
