"""The bundle fuzzer: mutations of the JSON files of real plans (manifest, schedule, GPU and NPU programs), with
every sha256 rewritten to match, each loaded and run. The only acceptable outcomes are one RuntimeMinError line
or a run whose outputs are what the plan declares; anything else (another exception, a crash, a hang) is a bug.
tests/test_bundle_fuzz.py runs it in CI; bench/fuzz.py runs it longer."""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from hostile_fixtures import image, rehash
from hypothesis import strategies as st

import runtime_min
from runtime_min.errors import RuntimeMinError

VALUES = [
    None, True, False, 0, 1, -1, 7, 2**31, 2**40, 2**70, 0.5, -3.5, 1e308, "", "cpu", "gpu", "npu", "float32",
    "int64", "../x", "/etc/passwd", "tensors.bin", "manifest.json", "p0.cpu.onnx", "a\u0000b", [], [0], [1, 1, 1],
    [-1], ["x"], {}, {"offset": 0}, [[]],
]  # fmt: skip
KINDS = ("delete", "replace", "duplicate", "drop-item", "swap", "rename-key")


def json_files(bundle: Path) -> list[str]:
    return sorted(p.name for p in bundle.iterdir() if p.suffix == ".json")


def paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a node of a JSON document (the root excluded), depth first, in a fixed order."""
    out: list[tuple] = []
    children = sorted(doc.items()) if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in children:
        out.append((*prefix, key))
        out += paths(value, (*prefix, key))
    return out


@st.composite
def mutations(draw, bundle: Path) -> tuple[str, tuple, str, Any]:
    """(file, path, kind, value) of one mutation of `bundle`."""
    name = draw(st.sampled_from(json_files(bundle)))
    doc = json.loads((bundle / name).read_text())
    nodes = paths(doc)
    path = nodes[draw(st.integers(0, len(nodes) - 1))]
    return name, path, draw(st.sampled_from(KINDS)), draw(st.sampled_from(VALUES))


def apply(doc: Any, path: tuple, kind: str, value: Any) -> Any:
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    key, node = path[-1], parent[path[-1]]
    if kind == "delete":
        del parent[key]
    elif kind == "replace":
        parent[key] = value
    elif kind == "duplicate" and isinstance(node, list) and node:
        node.append(node[0])
    elif kind == "drop-item" and isinstance(node, (list, dict)) and node:
        node.pop(next(iter(node)) if isinstance(node, dict) else -1)
    elif kind == "swap" and isinstance(node, list) and len(node) > 1:
        node[0], node[-1] = node[-1], node[0]
    elif kind == "rename-key" and isinstance(parent, dict):
        parent[str(value) if not isinstance(value, (dict, list)) else "k"] = parent.pop(key)
    else:
        parent[key] = value
    return doc


def mutated_copy(bundle: Path, folder: Path, name: str, path: tuple, kind: str, value: Any) -> Path:
    """`bundle` hard-linked into `folder`, file `name` rewritten with the mutation, hashes made to match."""
    out = folder / "b"
    out.mkdir()
    for item in bundle.iterdir():
        if item.name != name:
            os.link(item, out / item.name)
    doc = apply(json.loads((bundle / name).read_text()), path, kind, value)
    (out / name).write_text(json.dumps(doc, sort_keys=True))
    if name != "manifest.json":
        rehash(out)
    return out


def outcome(bundle: Path, feeds: dict[str, np.ndarray]) -> str:
    """Load and run; "error" for one RuntimeMinError line, "ran" for a run that kept its own promises."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with runtime_min.load(bundle, npu="sim") as plan:
                outputs = plan.run(feeds)
                specs = {s.name: s for s in plan.outputs}
    except RuntimeMinError as exc:
        assert str(exc) and "\n" not in str(exc), repr(exc)
        return "error"
    assert sorted(outputs) == sorted(specs)
    for name, value in outputs.items():
        assert value.dtype == np.dtype(specs[name].dtype) and value.shape == specs[name].shape, name
    return "ran"


def check(bundle: Path, mutation: tuple[str, tuple, str, Any]) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        return outcome(mutated_copy(bundle, Path(tmp), *mutation), image())
