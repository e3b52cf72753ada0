"""Load an ONNX file and bring it to the form every later stage expects: checked, opset >= 13, static shapes,
folded, cleaned, topologically sorted, every node named, viewed as a ragc.ir.Graph."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import version_converter

from ragc import ir
from ragc.errors import ModelError, ShapeError, UsageError
from ragc.frontend import contrib, gs_bridge, passes
from ragc.frontend.external import load_external_data
from ragc.frontend.infer import infer_shapes
from ragc.frontend.to_ir import to_ir

MAX_DIM = 2**31 - 1  # larger dims overflow the int32 index math of kernels (and int64 soon after)
MIN_NATIVE_OPSET = 13  # older models are upgraded to UPGRADE_OPSET
UPGRADE_OPSET = 17
MAX_OPSET = 23


@dataclass
class LoadedModel:
    proto: onnx.ModelProto  # the cleaned model; node names are unique and match graph op names
    graph: ir.Graph
    source_sha256: str


def parse_shapes(specs: list[str] | tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """`["image=1x3x224x224", ...]` -> `{"image": (1, 3, 224, 224)}`."""
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        name, sep, dims = spec.rpartition("=")
        try:
            shape = tuple(int(d) for d in dims.lower().split("x")) if dims else ()
        except ValueError:
            shape = ()
        if not sep or not name or not shape or min(shape) < 1:
            raise UsageError(
                f"bad --shape {spec!r}: write NAME=DIMxDIMx... with positive integers, e.g. image=1x3x224x224"
            )
        if max(shape) > MAX_DIM or math.prod(shape) > 2**40:
            raise UsageError(f"bad --shape {spec!r}: dimensions this large cannot be compiled; give the real sizes")
        shapes[name] = shape
    return shapes


def load_model(path: str | Path, shapes: dict[str, tuple[int, ...]] | None = None) -> LoadedModel:
    """The whole front end: read, check, upgrade, make static, infer, fold, clean, name, convert."""
    path = Path(path)
    raw = _read(path)
    model = _parse(raw, path)
    _check_ops(model)
    contrib.claim_default_domain(model, _default_opset(model))
    _check(model, path)
    _drop_initializer_inputs(model)
    model = _upgrade_opset(model)
    _set_input_shapes(model, shapes or {})
    model = infer_shapes(model)
    graph = gs_bridge.import_graph(model)
    for rewrite in passes.PIPELINE:
        graph = rewrite(graph)
    model = infer_shapes(gs_bridge.export_model(graph, like=model))
    _name_nodes(model)
    return LoadedModel(proto=model, graph=to_ir(model), source_sha256=_sha256(raw))


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _read(path: Path) -> bytes:
    if not path.exists():
        raise ModelError(f"model file {str(path)!r} does not exist; check the path")
    if path.is_dir():
        raise ModelError(f"{str(path)!r} is a directory; pass the .onnx file itself")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model file {str(path)!r} ({exc.strerror}); check its permissions") from None


def _parse(raw: bytes, path: Path) -> onnx.ModelProto:
    model = onnx.ModelProto()
    try:
        model.ParseFromString(raw)
    except DecodeError:
        raise ModelError(
            f"{str(path)!r} is not an ONNX model (protobuf decode failed); export it with torch.onnx or tf2onnx"
        ) from None
    if not model.graph.node and not model.graph.output:
        raise ModelError(f"{str(path)!r} is not an ONNX model (no graph found); export it with torch.onnx or tf2onnx")
    load_external_data(model, path)
    return model


def _default_opset(model: onnx.ModelProto) -> int:
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    return versions[0] if versions else 1


def _check_ops(model: onnx.ModelProto) -> None:
    opset = _default_opset(model)
    if opset > MAX_OPSET:
        raise ModelError(
            f"opset {opset} is newer than ragc supports (up to {MAX_OPSET}); export with opset <= {MAX_OPSET}"
        )
    for node in model.graph.node:
        known = node.domain in ("", "ai.onnx") and onnx.defs.has(node.op_type, opset, "")
        if not known and not contrib.is_contrib(node, opset):
            where = f" in domain {node.domain!r}" if node.domain else ""
            raise ModelError(
                f"unsupported operator {node.op_type!r}{where} (node {node.name or '<unnamed>'!r}); "
                "ragc compiles standard ONNX ops and the com.microsoft ops of onnxruntime's transformer optimizer: "
                "decompose or replace it before exporting"
            )


def _drop_initializer_inputs(model: onnx.ModelProto) -> None:
    """Old models (IR < 4) list every initializer among the graph inputs; they are weights, not inputs."""
    weights = {init.name for init in model.graph.initializer}
    kept = [vi for vi in model.graph.input if vi.name not in weights]
    if len(kept) != len(model.graph.input):
        del model.graph.input[:]
        model.graph.input.extend(kept)
        model.ir_version = max(model.ir_version, 4)  # IR 4 is where initializers stopped being inputs


def _check(model: onnx.ModelProto, path: Path) -> None:
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"{str(path)!r} is not a valid ONNX model: {first}") from None


def _upgrade_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    opset = _default_opset(model)
    if opset >= MIN_NATIVE_OPSET:
        return model
    try:
        upgraded = version_converter.convert_version(model, UPGRADE_OPSET)
    except Exception as exc:  # the converter raises RuntimeError or ValueError variously
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"cannot upgrade opset {opset} to {UPGRADE_OPSET} ({first}); re-export with opset >= 13"
        ) from None
    if upgraded.ir_version < 7:
        upgraded.ir_version = 7
    return upgraded


def _set_input_shapes(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> None:
    inputs = {vi.name: vi for vi in model.graph.input}
    unknown = sorted(set(shapes) - set(inputs))
    if unknown:
        raise UsageError(f"--shape names {', '.join(unknown)}, not an input of the model; inputs: {', '.join(inputs)}")
    dynamic = []
    for name, vi in inputs.items():
        dims = vi.type.tensor_type.shape.dim
        if name in shapes:
            given = shapes[name]
            if len(dims) and len(given) != len(dims):
                raise ShapeError(f"--shape {name} has rank {len(given)} but the model says rank {len(dims)}")
            fixed = [d.dim_value for d in dims]
            for i, d in enumerate(fixed):
                if d and i < len(given) and given[i] != d:
                    raise ShapeError(f"--shape {name} sets dim {i} to {given[i]} but the model fixes it to {d}")
            del dims[:]
            for value in given:
                dims.add().dim_value = value
        elif not vi.type.tensor_type.HasField("shape") or any(not d.HasField("dim_value") for d in dims):
            shown = "x".join(d.dim_param or (str(d.dim_value) if d.HasField("dim_value") else "?") for d in dims)
            dynamic.append(f"{name}[{shown}]")
    if dynamic:
        raise ShapeError(
            f"dynamic input shape: {', '.join(dynamic)}; give static shapes with --shape NAME=1x3x224x224 for each"
        )


def _name_nodes(model: onnx.ModelProto) -> None:
    """Give every node a unique, deterministic name (partitions refer to nodes by name)."""
    seen: set[str] = set()
    for index, node in enumerate(model.graph.node):
        name = node.name or f"{node.op_type}_{index}"
        while name in seen:
            name = f"{name}_{index}"
        node.name = name
        seen.add(name)
