"""The benchmark model set: the onnx light zoo, the example tinynet and, when torch is present, torchvision CNNs."""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache"
LIGHT_DIR = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
TORCH_MODELS = ("resnet18", "mobilenet_v2", "efficientnet_b0")


@dataclass(frozen=True)
class BenchModel:
    name: str
    path: Path | None  # None until a torch model is exported (see `materialize`)
    source: str  # "torchvision", "example" or "light-zoo"


@dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: str
    shape: tuple[int, ...]


def light_zoo() -> list[BenchModel]:
    """Smallest file first, so that a run cut short by its time budget has measured the most models."""
    paths = sorted(LIGHT_DIR.glob("light_*.onnx"), key=lambda p: (p.stat().st_size, p.name))
    return [BenchModel(p.stem.removeprefix("light_"), p, "light-zoo") for p in paths]


def torch_available() -> str | None:
    """None when torch and torchvision import, else why not."""
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except Exception as exc:  # an import error or a broken install: either way, no torch models
        return f"torch/torchvision not importable ({type(exc).__name__}: {exc})"
    return None


def model_set(with_torch: bool = True) -> list[BenchModel]:
    """Every model, in benchmark order: the torchvision CNNs first (the headline), then tinynet, then the light zoo."""
    torch_models = [BenchModel(n, None, "torchvision") for n in TORCH_MODELS] if with_torch else []
    return [*torch_models, BenchModel("tinynet", ROOT / "examples" / "tinynet.onnx", "example"), *light_zoo()]


def select(models: list[BenchModel], names: str | None) -> list[BenchModel]:
    """Models named in a comma list (in that order), or all; unknown names raise ValueError listing the choices."""
    if not names:
        return models
    by_name = {m.name: m for m in models}
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise ValueError(f"unknown --models {', '.join(unknown)}; choose from {', '.join(by_name)}")
    return [by_name[n] for n in wanted]


def materialize(model: BenchModel, cache: Path = CACHE) -> Path:
    """The model's .onnx path, exporting a torchvision model into `cache` first if it is not there yet."""
    if model.path is not None:
        return model.path
    path = cache / f"{model.name}.onnx"
    if not path.exists():
        export_torchvision(model.name, path)
    return path


def export_torchvision(name: str, path: Path) -> None:
    """Random weights (seeded), eval mode, batch 1, 3x224x224, opset 17; written atomically."""
    import torch
    import torchvision

    torch.manual_seed(0)
    net = getattr(torchvision.models, name)(weights=None).eval()
    example = torch.rand(1, 3, 224, 224)
    options = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    with torch.no_grad():
        torch.onnx.export(
            net, (example,), str(partial), opset_version=17, input_names=["input"], output_names=["logits"], **options
        )
    partial.replace(path)


def input_specs(path: Path) -> list[InputSpec]:
    """The model's real inputs (not initializers); a symbolic dimension raises ValueError naming it."""
    model = onnx.load(str(path), load_external_data=False)
    weights = {init.name for init in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in weights:
            continue
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in tensor.shape.dim]
        if any(not isinstance(d, int) or d <= 0 for d in dims):
            raise ValueError(f"input {value.name!r} of {path.name} has a symbolic shape {dims}; export it static")
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name
        specs.append(InputSpec(value.name, dtype, tuple(dims)))
    return specs


def output_names(path: Path) -> list[str]:
    return [o.name for o in onnx.load(str(path), load_external_data=False).graph.output]
