"""Checks of the files a command will write or read, made before any work so a bad path fails in a second."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ragc.errors import UsageError


def writable_file(path: Path, option: str) -> None:
    """`path` can be created or replaced: its folder exists and is writable, and it is not a folder."""
    folder = path.absolute().parent
    if not folder.is_dir():
        raise UsageError(f"{option} {str(path)!r}: folder {str(folder)!r} does not exist; create it first")
    if path.is_dir():
        raise UsageError(f"{option} {str(path)!r} is a folder; give a file name")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{option} {str(path)!r}: folder {str(folder)!r} is not writable; choose another place")


def read_array(spec: str) -> tuple[str, np.ndarray]:
    """`NAME=FILE.npy` -> (name, array); never unpickles, and names what is wrong with the file."""
    name, sep, file = spec.rpartition("=")
    if not sep or not name:
        raise UsageError(f"bad --input {spec!r}: write NAME=FILE.npy")
    try:
        value = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"cannot read --input {name} from {file!r} ({first}); give a .npy file (np.save)") from None
    if not isinstance(value, np.ndarray):
        value.close()
        raise UsageError(f"--input {name}: {file!r} is an .npz archive; save one array per input with np.save")
    return name, value


def output_file_name(name: str) -> str:
    """A file name for output `name` that no other output name maps to: characters outside [A-Za-z0-9._-] and a
    leading dot are written as %XX, so "a/b" and "a_b" never meet."""
    safe = "".join(
        c if c.isascii() and (c.isalnum() or c in "_-") or (c == "." and i) else f"%{ord(c):02X}"
        for i, c in enumerate(name)
    )
    return f"{safe or '%'}.npy"
