"""Write a plan bundle: a relocatable directory with manifest.json, schedule.json and every artifact file."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ragc import __version__
from ragc.errors import UsageError

FORMAT_NAME = "ragc-bundle"
FORMAT_VERSION = 1


def dumps(obj: Any) -> bytes:
    """Canonical JSON: sorted keys, fixed indentation, trailing newline (bundles must be byte-identical)."""
    return (json.dumps(obj, sort_keys=True, indent=1, allow_nan=False) + "\n").encode()


def write_bundle(out_dir: str | Path, schedule: dict[str, Any], files: dict[str, bytes], info: dict[str, Any]) -> Path:
    """Write atomically: build beside the target, then swap it in. `info` adds manifest fields (model hash...)."""
    out_dir = Path(out_dir)
    _refuse_foreign(out_dir)
    all_files = {**files, "schedule.json": dumps(schedule)}
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "ragc_version": __version__,
        "inputs": schedule["inputs"],
        "outputs": schedule["outputs"],
        "processors": schedule["processors"],
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(all_files.items())},
        **info,
    }
    all_files["manifest.json"] = dumps(manifest)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    staging.chmod(0o755)
    try:
        for name, data in all_files.items():
            (staging / name).write_bytes(data)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out_dir


def _refuse_foreign(out_dir: Path) -> None:
    """Never delete something that is not a bundle: an existing target must be empty or an earlier bundle."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise UsageError(f"output {str(out_dir)!r} exists and is a file; choose a directory path")
    if any(out_dir.iterdir()) and not (out_dir / "manifest.json").exists():
        raise UsageError(f"output {str(out_dir)!r} is a non-empty directory that is not a ragc bundle; choose another")
