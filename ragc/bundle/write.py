"""Write a plan bundle: built complete in a hidden sibling folder, then renamed into place.

An existing target is replaced only when it is a ragc bundle holding nothing but the files its own manifest lists
(and no folders); anything else is refused, naming what is in the way. The model being compiled is never inside
the target, and nothing is followed through a symbolic link.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ragc.errors import UsageError
from ragc.version import VERSION
from runtime_min.format import FORMAT_NAME, FORMAT_VERSION, MANIFEST, SCHEDULE, dumps


def write_bundle(
    out_dir: str | Path, schedule: dict[str, Any], files: dict[str, bytes], info: dict[str, Any], model: Path
) -> Path:
    """Write `files` plus schedule.json and manifest.json (with `info` fields) as the bundle `out_dir`."""
    out_dir = Path(out_dir)
    check_target(out_dir, model)
    all_files = {**files, SCHEDULE: dumps(schedule)}
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "ragc_version": VERSION,
        "inputs": schedule["inputs"],
        "outputs": schedule["outputs"],
        "processors": schedule["processors"],
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(all_files.items())},
        **info,
    }
    all_files[MANIFEST] = dumps(manifest)
    parent = out_dir.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.new-", dir=parent))
    except OSError as exc:
        raise UsageError(
            f"cannot create the bundle folder in {str(parent)!r} ({exc.strerror}); choose a writable -o"
        ) from None
    try:
        staging.chmod(0o755)
        for name, data in all_files.items():
            (staging / name).write_bytes(data)
        _swap_in(staging, out_dir)
    except OSError as exc:
        raise UsageError(f"cannot write the bundle {str(out_dir)!r} ({exc.strerror}); choose a writable -o") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out_dir


def _swap_in(staging: Path, out_dir: Path) -> None:
    """Rename the new bundle into place; an old bundle is moved aside first and removed once the new one is in."""
    if not out_dir.exists():
        os.replace(staging, out_dir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.absolute().parent))
    os.replace(out_dir, old / "bundle")
    try:
        os.replace(staging, out_dir)
    except OSError:
        os.replace(old / "bundle", out_dir)  # put the old bundle back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def check_target(out_dir: Path, model: Path) -> None:
    """Refuse a target that is not free to be (re)written, naming the problem and the fix."""
    if out_dir.is_symlink():
        raise UsageError(f"output {str(out_dir)!r} is a symbolic link; give the folder's real path with -o")
    for parent in out_dir.absolute().parents:
        if parent.exists() and not parent.is_dir():
            raise UsageError(f"output {str(out_dir)!r} is under {str(parent)!r}, which is a file; choose another -o")
    if _inside(model, out_dir):
        raise UsageError(f"output {str(out_dir)!r} holds the model being compiled; choose a new folder for -o")
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise UsageError(f"output {str(out_dir)!r} exists and is a file; choose a folder path for -o")
    entries = sorted(p.name for p in out_dir.iterdir())
    if not entries:
        return
    listed = _listed_files(out_dir)
    if listed is None:
        raise UsageError(f"output {str(out_dir)!r} is a non-empty folder that is not a ragc bundle; choose another -o")
    foreign = [name for name in entries if name != MANIFEST and (name not in listed or not (out_dir / name).is_file())]
    if foreign:
        raise UsageError(
            f"output {str(out_dir)!r} is a ragc bundle that also holds {foreign[0]!r}, which ragc did not write; "
            "move it out or choose another -o (nothing was changed)"
        )


def _listed_files(folder: Path) -> set[str] | None:
    """The file names an existing bundle's manifest lists, or None when the folder holds no ragc manifest."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if manifest.get("format") != FORMAT_NAME or not isinstance(files, dict):
        return None
    return {name for name in files if isinstance(name, str) and "/" not in name}


def _inside(path: Path, folder: Path) -> bool:
    try:
        real, home = path.resolve(), folder.resolve()
    except OSError:
        return False
    return real == home or home in real.parents
