"""External data of a model file, checked before anything reads it: every location relative, inside the model's
folder (symlinks too), present, and long enough for what the tensor declares. Each problem is one line with the fix."""

from __future__ import annotations

from pathlib import Path, PurePath

import onnx
from onnx import external_data_helper

from ragc.errors import ModelError


def load_external_data(model: onnx.ModelProto, path: Path) -> None:
    """Check every external tensor of `model` (loaded from `path`), then read their data in."""
    folder = path.absolute().parent
    for tensor in external_data_helper._get_all_tensors(model):
        if external_data_helper.uses_external_data(tensor):
            _check(tensor, folder, path)
    try:
        external_data_helper.load_external_data_for_model(model, str(folder))
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(
            f"external data of {str(path)!r} cannot be read ({first}); re-save the model with onnx.save"
        ) from None


def _check(tensor: onnx.TensorProto, folder: Path, model: Path) -> None:
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    name = f"external data of tensor {tensor.name!r} in {str(model)!r}"
    if not location or PurePath(location).is_absolute() or ".." in PurePath(location).parts:
        raise ModelError(
            f"{name} is at {location!r}, not a path inside the model's folder; keep data files beside the model"
        )
    file = folder / location
    if folder.resolve() not in file.resolve().parents:
        raise ModelError(
            f"{name} ({location!r}) leads outside the model's folder (a symlink?); copy the data file beside it"
        )
    if not file.is_file():
        raise ModelError(f"{name} needs {location!r}, which is missing; keep the data files beside the model")
    try:
        offset, length = int(info.get("offset", 0)), int(info.get("length", -1))
    except ValueError:
        raise ModelError(f"{name} has a malformed offset or length; re-save the model with onnx.save") from None
    size = file.stat().st_size
    if offset < 0 or offset > size or (length >= 0 and offset + length > size):
        raise ModelError(
            f"{name} declares bytes [{offset}, {offset + max(length, 0)}) but {location!r} has {size}; "
            "the data file is truncated or not this model's: copy it again"
        )
