"""`ragc --version`: ragc, the runtime it ships with, the bundle format, and the libraries that decide behaviour.
Read from package metadata, so nothing heavy is imported."""

from __future__ import annotations

import platform
from importlib import metadata

LIBRARIES = ("numpy", "onnx", "onnxruntime", "onnx-graphsurgeon", "scipy", "scikit-learn", "vulkan", "jinja2", "rich")


def library_version(name: str) -> str | None:
    """The installed version of distribution `name`, or None when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, object]:
    """Everything `--version` prints, as data (for `ragc devices --json` too)."""
    import runtime_min
    from ragc.version import VERSION
    from runtime_min.format import FORMAT_VERSION, READABLE_VERSIONS

    return {
        "ragc": VERSION,
        "runtime_min": runtime_min.__version__,
        "bundle_format": FORMAT_VERSION,
        "reads_bundle_formats": list(READABLE_VERSIONS),
        "python": platform.python_version(),
        "libraries": {name: library_version(name) for name in LIBRARIES},
    }


def version_text() -> str:
    v = versions()
    libraries = ", ".join(f"{name} {version or 'not installed'}" for name, version in v["libraries"].items())
    reads = ", ".join(map(str, v["reads_bundle_formats"]))
    return (
        f"ragc {v['ragc']}\n"
        f"runtime_min {v['runtime_min']} (writes bundle format {v['bundle_format']}, reads {reads})\n"
        f"python {v['python']}; {libraries}"
    )
