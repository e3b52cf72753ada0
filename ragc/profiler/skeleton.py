"""Weightless skeletons of real exported models, and their deterministic refill: big float initializers lose their
data (dims kept, marked), and are refilled with N(0, 1/fan_in) seeded by the tensor's name, so every machine
rebuilds the same model. Timing does not depend on weight values; small tensors (norm parameters, biases, shape
constants) are kept as they are. bench/skeletons holds those of the models exported on the H200 machine;
`ragc costmodel eval --models PATH.onnx,...` fills them itself.

    python -m ragc.profiler.skeleton strip MODEL.onnx SKELETON.onnx
    python -m ragc.profiler.skeleton fill SKELETON.onnx MODEL.onnx
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

KEEP = 4096  # tensors with at most this many elements are kept
MARK = "ragc-skeleton"


def strip(src: Path, dst: Path) -> None:
    model = onnx.load(str(src))
    for t in model.graph.initializer:
        if int(np.prod(t.dims)) > KEEP and t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
            for name in ("raw_data", "float_data", "int32_data"):
                t.ClearField(name)
            t.doc_string = MARK
    onnx.save(model, str(dst))


def _seed(name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"skeleton:{name}".encode()).digest()[:8], "little")


def is_skeleton(model: onnx.ModelProto) -> bool:
    return any(t.doc_string == MARK for t in model.graph.initializer)


def fill(src: Path, dst: Path) -> None:
    model = onnx.load(str(src))
    filled(model)
    onnx.save(model, str(dst), save_as_external_data=model.ByteSize() > 1_800_000_000)


def filled(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with its marked initializers refilled in place (and returned)."""
    for t in model.graph.initializer:
        if t.doc_string != MARK:
            continue
        dims = tuple(t.dims)
        fan = dims[0] if len(dims) <= 2 else int(np.prod(dims[1:]))
        values = np.random.default_rng(_seed(t.name)).standard_normal(dims) / np.sqrt(max(fan, 1))
        dtype = np.float16 if t.data_type == onnx.TensorProto.FLOAT16 else np.float32
        t.CopyFrom(numpy_helper.from_array(values.astype(dtype), t.name))
    return model


def main(argv: list[str]) -> int:
    commands = {"strip": strip, "fill": fill}
    if len(argv) != 3 or argv[0] not in commands:
        print("usage: python -m ragc.profiler.skeleton strip|fill SOURCE.onnx DEST.onnx", file=sys.stderr)
        return 2
    commands[argv[0]](Path(argv[1]), Path(argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
