"""Read and verify a bundle: format and version, every file's sha256, no path leaving the bundle."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from runtime_min.errors import BundleError

FORMAT_NAME = "ragc-bundle"
FORMAT_VERSION = 1  # newest bundle format this runtime reads
SCHEDULE_VERSION = 1


def read_bundle(path: str | Path, verify_hashes: bool = True) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """(bundle dir, manifest, schedule) after every check passed (hashes skipped only for a bundle just written)."""
    root = Path(path)
    if not (root / "manifest.json").is_file():
        raise BundleError(f"{str(root)!r} is not a ragc bundle (no manifest.json); compile one with `ragc compile`")
    manifest = _read_json(root, "manifest.json")
    if manifest.get("format") != FORMAT_NAME:
        raise BundleError(f"{str(root)!r}: manifest.json is not a ragc bundle manifest; recompile the model")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BundleError(
            f"bundle format {version} is newer than this runtime reads ({FORMAT_VERSION}); upgrade runtime_min"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or "schedule.json" not in files:
        raise BundleError(f"{str(root)!r}: manifest.json lists no files; the bundle is corrupt, recompile it")
    for name, digest in sorted(files.items()) if verify_hashes else []:
        _verify_file(root, name, digest)
    schedule = _read_json(root, "schedule.json")
    if schedule.get("schedule_version") != SCHEDULE_VERSION:
        raise BundleError(
            f"schedule version {schedule.get('schedule_version')} is not readable here; upgrade runtime_min"
        )
    for part in schedule["partitions"]:
        for artifact in (part["artifact"], part.get("fallback") or {}):
            missing = [f for f in artifact.get("files", []) if f not in files]
            if missing:
                raise BundleError(
                    f"partition {part['id']} uses {missing[0]!r}, which the manifest does not list; "
                    "the bundle is corrupt, recompile it"
                )
    return root, manifest, schedule


def inside(root: Path, name: str) -> Path:
    """The bundle file `name`, refusing absolute paths and any path that leaves the bundle."""
    candidate = (root / name).resolve()
    if Path(name).is_absolute() or ".." in Path(name).parts or root.resolve() not in candidate.parents:
        raise BundleError(f"bundle file {name!r} points outside the bundle; refusing to load a tampered bundle")
    return candidate


def _verify_file(root: Path, name: str, digest: str) -> None:
    path = inside(root, name)
    if not path.is_file():
        raise BundleError(f"bundle file {name!r} is missing; copy the whole bundle directory or recompile")
    sha = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            sha.update(block)
    if sha.hexdigest() != digest:
        raise BundleError(
            f"bundle file {name!r} does not match its sha256 in manifest.json (tampered or corrupt); "
            "recompile the model"
        )


def _read_json(root: Path, name: str) -> dict[str, Any]:
    try:
        data = json.loads(inside(root, name).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(
            f"{name} in {str(root)!r} is not readable JSON ({exc.__class__.__name__}); "
            "the bundle is corrupt, recompile it"
        ) from None
    if not isinstance(data, dict):
        raise BundleError(f"{name} in {str(root)!r} is not a JSON object; the bundle is corrupt, recompile it")
    return data
