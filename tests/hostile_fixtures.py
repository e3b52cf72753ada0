"""Helpers for the hostile tests and the bundle fuzzer: real plans compiled once, copies of them with a file
edited and every hash made to match again (so only the runtime's own checks stand between the edit and a run)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from executor_plans import three_processor_plan
from models import conv_bn_relu_model, save

from ragc.pipeline import compile_model

TARGET = "ryzen-ai-9-hx-370"
IMAGE = (1, 3, 16, 16)


def compile_plans(folder: Path) -> dict[str, Path]:
    """Three real plans of one model: cpu only (two partitions), GPU-first, and cpu + gpu + npu."""
    model = save(conv_bn_relu_model(), folder / "m.onnx")
    cpu = compile_model(model, folder / "cpu", devices="cpu", target=TARGET, cut_before=["conv2"]).bundle
    gpu = compile_model(model, folder / "gpu", devices="gpu", target=TARGET).bundle
    return {"cpu": cpu, "gpu": gpu, "three": three_processor_plan(folder / "three")}


def image(seed: int = 0) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).standard_normal(IMAGE).astype(np.float32)}


def copy_plan(bundle: Path, out: Path) -> Path:
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(bundle, out, symlinks=True)
    return out


def rehash(bundle: Path) -> None:
    """Make manifest.json's sha256 list match every listed file that exists (what a hostile author would do)."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if isinstance(files, dict):
        for name in list(files):
            path = bundle / str(name)
            if isinstance(name, str) and path.is_file() and not path.is_symlink():
                files[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest, sort_keys=True, indent=1))


def edit_json(bundle: Path, name: str, edit: Callable[[Any], Any]) -> None:
    """Apply `edit` to the JSON file `name` of `bundle` (it returns the new document), then rehash."""
    path = bundle / name
    data = json.loads(path.read_text())
    (path).write_text(json.dumps(edit(data), sort_keys=True, indent=1))
    rehash(bundle)


def program_of(bundle: Path, device: str) -> str:
    """The file name of the first partition's program on `device`."""
    schedule = json.loads((bundle / "schedule.json").read_text())
    part = next(p for p in schedule["partitions"] if p["device"] == device)
    return part["artifact"]["program"]


def ragc(*args: Any, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ragc.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def one_line_error(result: subprocess.CompletedProcess, pattern: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert pattern in lines[0], lines[0]
