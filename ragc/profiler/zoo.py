"""The evaluation model set: the onnx package's light zoo plus transformer blocks and small CNNs built here."""

from __future__ import annotations

from pathlib import Path

import onnx

from ragc.errors import PersonalityError
from ragc.ir import Graph
from ragc.profiler.modelgen import small_cnn, to_graphs, transformer


def generated_models() -> dict[str, onnx.ModelProto]:
    return {
        "transformer_s128_d256": transformer(128, 256, 4, 2),
        "transformer_s64_d512": transformer(64, 512, 8, 2),
        "vit_s197_d384": transformer(197, 384, 6, 1),
        "cnn_dw_160": small_cnn(160, [32, 64, 128, 256, 512], depthwise=True),
        "cnn_plain_96": small_cnn(96, [32, 64, 128], depthwise=False),
        "cnn_dw_224": small_cnn(224, [16, 32, 64, 96, 160], depthwise=True),
    }


def light_zoo_paths() -> dict[str, Path]:
    light = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    return {p.stem.removeprefix("light_"): p for p in sorted(light.glob("light_*.onnx"))}


def model_set(names: list[str] | None = None) -> dict[str, Graph]:
    """Name -> ir.Graph (through ragc's front end) of every evaluation model, or of those named."""
    from ragc.frontend import load_model

    paths = light_zoo_paths()
    generated = generated_models()
    known = [*paths, *generated]
    chosen = names or known
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise PersonalityError(f"unknown eval model(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    built = to_graphs({name: generated[name] for name in chosen if name not in paths})
    return {name: built[name] if name in built else load_model(paths[name]).graph for name in chosen}
