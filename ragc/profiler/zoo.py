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
    """Name -> ir.Graph (through ragc's front end) of every evaluation model, or of those named; a name ending in
    .onnx is a model file (a weightless skeleton is filled first), kept under that name so that saved timings can
    rebuild it (model_label shows its stem)."""
    from ragc.frontend import load_model

    files = {n: _file_graph(Path(n)) for n in names or [] if n.endswith(".onnx")}
    paths = light_zoo_paths()
    generated = generated_models()
    known = [*paths, *generated]
    chosen = names or known
    if not set(chosen) <= set(known) | set(files):
        unknown = sorted(set(chosen) - set(known) - set(files))
        raise PersonalityError(f"unknown eval model(s) {', '.join(unknown)}; choose from {', '.join(known)} or a .onnx")
    built = to_graphs({name: generated[name] for name in chosen if name in generated and name not in files})
    loaded = {name: load_model(paths[name]).graph for name in chosen if name in paths and name not in files}
    return {name: files.get(name) or built.get(name) or loaded[name] for name in chosen}


def model_label(name: str) -> str:
    """How reports show an evaluation model: a model file by its stem."""
    return Path(name).stem if name.endswith(".onnx") else name


def _file_graph(path: Path) -> Graph:
    """The ir.Graph of a model file; a weightless skeleton is filled first (ragc.profiler.skeleton)."""
    import tempfile

    from ragc.frontend import load_model
    from ragc.profiler.skeleton import filled, is_skeleton

    if not path.is_file():
        raise PersonalityError(f"no model file {path}; give a path to an .onnx or a model name")
    model = onnx.load(str(path), load_external_data=False)
    if not is_skeleton(model):
        return load_model(path).graph
    with tempfile.TemporaryDirectory(prefix="ragc-skeleton-") as tmp:
        onnx.save(filled(model), str(Path(tmp) / path.name))
        return load_model(Path(tmp) / path.name).graph
