"""Read and check a bundle: format and version, every file's sha256, every path confined to the bundle, and the
schema of manifest.json and schedule.json turned into typed entries. The tensor store is mapped, not copied."""

from __future__ import annotations

import hashlib
import json
import mmap
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from runtime_min import format as fmt
from runtime_min.errors import BundleError


@dataclass(frozen=True)
class TensorSpec:
    """A plan input or output: its name, numpy dtype name and static shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @classmethod
    def from_json(cls, spec: Any, where: str) -> TensorSpec:
        return cls(
            fmt.need_str(spec, "name", where),
            fmt.need_dtype(spec, "dtype", where),
            fmt.need_shape(spec, "shape", where),
        )


@dataclass(frozen=True)
class Artifact:
    """What a backend loads for one partition: a format, the bundle files it reads, and its main file."""

    format: str
    files: tuple[str, ...]
    main: str  # the ONNX model, GPU program or NPU program


@dataclass(frozen=True)
class Partition:
    id: str
    device: str
    ops: tuple[str, ...]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    artifact: Artifact
    fallback: Artifact | None
    predicted_ms: float | None
    in_place: dict[str, str] = field(default_factory=dict)  # input -> the output written into its buffer

    def on_cpu(self) -> Partition:
        """This partition as its CPU fallback runs it."""
        assert self.fallback is not None
        return replace(self, device="cpu", artifact=self.fallback, fallback=None)


class TensorStore:
    """tensors.bin, memory-mapped read-only: every constant of the plan once, sliced with bounds checks."""

    def __init__(self, path: Path | None) -> None:
        self._map = None
        self.data = np.zeros(0, np.uint8)
        if path is not None and path.stat().st_size:
            with path.open("rb") as f:
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            self.data = np.frombuffer(self._map, np.uint8)

    def view(self, offset: int, nbytes: int, where: str) -> np.ndarray:
        if offset < 0 or nbytes < 0 or offset + nbytes > self.data.size:
            raise fmt.bad(
                where,
                f"tensor store range [{offset}, {offset + nbytes}) is outside tensors.bin ({self.data.size} bytes)",
            )
        return self.data[offset : offset + nbytes]

    def tensor(self, entry: Any, where: str) -> np.ndarray:
        """A {"offset", "dtype", "shape"} entry as a read-only array over the store."""
        offset = fmt.need_int(entry, "offset", where)
        dtype, shape = fmt.need_dtype(entry, "dtype", where), fmt.need_shape(entry, "shape", where)
        return self.view(offset, fmt.nbytes(dtype, shape), where).view(dtype).reshape(shape)


@dataclass
class Bundle:
    root: Path
    manifest: dict[str, Any]
    schedule: dict[str, Any]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    partitions: list[Partition]
    steps: dict[str, list[tuple[str, tuple[str, ...]]]]  # processor -> (partition id, explicit waits) in order
    constants: dict[str, dict[str, Any]]  # plan outputs that are constants: name -> store entry
    store: TensorStore

    def path(self, name: str, where: str) -> Path:
        """A file the manifest lists, inside the bundle."""
        if name not in self.manifest["files"]:
            raise fmt.bad(where, f"{name!r} is not listed in manifest.json")
        path = fmt.confined(self.root, name, where)
        if not path.is_file():
            raise BundleError(f"bundle file {name!r} is missing; copy the whole bundle directory or recompile")
        return path

    def read_json(self, name: str, where: str) -> dict[str, Any]:
        return _json(self.path(name, where), name)


def read_bundle(path: str | Path, verify_hashes: bool = True, schedule_file: str = fmt.SCHEDULE) -> Bundle:
    """The checked bundle at `path` (hashes skipped only for a bundle just written), with one variant's schedule."""
    root = Path(path)
    if not (root / fmt.MANIFEST).is_file():
        raise BundleError(f"{str(root)!r} is not a ragc bundle (no manifest.json); compile one with `ragc compile`")
    manifest = _json(root / fmt.MANIFEST, fmt.MANIFEST)
    _check_version(manifest, root)
    files = fmt.need(manifest, "files", dict, fmt.MANIFEST)
    if schedule_file not in files:
        raise fmt.bad(fmt.MANIFEST, f"it lists no {schedule_file}")
    for name, digest in sorted(files.items()):
        _verify(root, name, digest, verify_hashes)
    schedule = _json(fmt.confined(root, schedule_file, fmt.MANIFEST), schedule_file)
    fmt.need_int(schedule, "schedule_version", schedule_file, min(fmt.READABLE_VERSIONS), fmt.FORMAT_VERSION)
    store = TensorStore(root / fmt.TENSOR_STORE if fmt.TENSOR_STORE in files else None)
    bundle = Bundle(root, manifest, schedule, *_schedule_entries(schedule, files), store)
    for name, entry in bundle.constants.items():
        store.tensor(entry, f"{fmt.SCHEDULE} constant {name!r}")
    return bundle


def _check_version(manifest: dict[str, Any], root: Path) -> None:
    if manifest.get("format") != fmt.FORMAT_NAME:
        raise BundleError(f"{str(root)!r}: manifest.json is not a ragc bundle manifest; recompile the model")
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise fmt.bad(fmt.MANIFEST, f"format_version {version!r} is not a whole number")
    if version > max(fmt.READABLE_VERSIONS):
        raise BundleError(
            f"bundle format {version} is newer than this runtime reads ({fmt.FORMAT_VERSION}); upgrade runtime_min"
        )
    if version not in fmt.READABLE_VERSIONS:
        raise BundleError(
            f"bundle format {version} is older than this runtime reads ({', '.join(map(str, fmt.READABLE_VERSIONS))}); "
            "recompile the model with this ragc"
        )


def _verify(root: Path, name: str, digest: Any, verify: bool) -> None:
    path = fmt.confined(root, name, fmt.MANIFEST)
    if not isinstance(digest, str) or len(digest) != 64:
        raise fmt.bad(fmt.MANIFEST, f"the sha256 of {name!r} is not 64 hex digits")
    if not path.is_file():
        raise BundleError(f"bundle file {name!r} is missing; copy the whole bundle directory or recompile")
    if not verify:
        return
    sha = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 22), b""):
            sha.update(block)
    if sha.hexdigest() != digest:
        raise BundleError(
            f"bundle file {name!r} does not match its sha256 in manifest.json (tampered or corrupt); recompile it"
        )


def _json(path: Path, name: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BundleError(
            f"{name} in {str(path.parent)!r} is not readable JSON ({type(exc).__name__}); {fmt.RECOMPILE}"
        ) from None
    if not isinstance(data, dict):
        raise fmt.bad(name, "it is not a JSON object")
    return data


def _artifact(entry: Any, device: str, files: dict[str, str], where: str) -> Artifact:
    kind = fmt.need_str(entry, "format", where, (fmt.ARTIFACT_FORMATS[device],))
    listed = fmt.need_list(entry, "files", where, str)
    main = fmt.need_str(entry, "model" if device == "cpu" else "program", where)
    for name in [*listed, main]:
        fmt.need_file(name, where)
        if name not in files:
            raise fmt.bad(where, f"it uses {name!r}, which the manifest does not list")
    return Artifact(kind, tuple(listed), main)


def _partition(entry: Any, files: dict[str, str], index: int) -> Partition:
    where = f"{fmt.SCHEDULE} partition {index}"
    pid = fmt.need_str(entry, "id", where)
    where = f"{fmt.SCHEDULE} partition {pid}"
    device = fmt.need_str(entry, "device", where, fmt.PROCESSORS)
    fallback = entry.get("fallback")
    inputs = tuple(TensorSpec.from_json(s, where) for s in fmt.need_list(entry, "inputs", where))
    outputs = tuple(TensorSpec.from_json(s, where) for s in fmt.need_list(entry, "outputs", where))
    in_place = fmt.need(entry, "in_place", dict, where) if "in_place" in entry else {}
    ins, outs = {s.name: s for s in inputs}, {s.name: s for s in outputs}
    same = [
        isinstance(o, str) and i in ins and o in outs and ins[i] == replace(outs[o], name=i)
        for i, o in in_place.items()
    ]
    if not all(same):
        raise fmt.bad(where, "its in_place pairs are not an input and an output of the same dtype and shape")
    return Partition(
        pid,
        device,
        tuple(fmt.need_list(entry, "ops", where, str)),
        inputs,
        outputs,
        _artifact(fmt.need(entry, "artifact", dict, where), device, files, where),
        None if fallback is None else _artifact(fallback, "cpu", files, where + " fallback"),
        fmt.need_number(entry, "predicted_ms", where),
        in_place,
    )


def _schedule_entries(schedule: dict[str, Any], files: dict[str, str]) -> tuple:
    where = fmt.SCHEDULE
    inputs = [TensorSpec.from_json(s, where) for s in fmt.need_list(schedule, "inputs", where)]
    outputs = [TensorSpec.from_json(s, where) for s in fmt.need_list(schedule, "outputs", where)]
    partitions = [_partition(p, files, i) for i, p in enumerate(fmt.need_list(schedule, "partitions", where))]
    steps = {}
    for processor in fmt.need(schedule, "steps", dict, where):
        if processor not in fmt.PROCESSORS:
            raise fmt.bad(where, f"steps name processor {processor!r}, not one of {', '.join(fmt.PROCESSORS)}")
        steps[processor] = [
            (fmt.need_str(e, "partition", where), tuple(fmt.need_list(e, "waits", where, str)))
            for e in fmt.need_list(schedule["steps"], processor, where)
        ]
    constants = fmt.need(schedule, "constants", dict, where) if "constants" in schedule else {}
    _check_names(inputs, outputs, partitions, constants)
    return inputs, outputs, partitions, steps, constants


def _check_names(inputs: list, outputs: list, partitions: list[Partition], constants: dict) -> None:
    """Unique ids and tensor names; every tensor read (by a partition or as a plan output) is fed in, written by a
    partition or a constant, with the same dtype and shape everywhere it is named."""
    ids = [p.id for p in partitions]
    if len(set(ids)) != len(ids):
        raise fmt.bad(fmt.SCHEDULE, "two partitions share an id")
    written = [*inputs, *(s for p in partitions for s in p.outputs)]
    names = [s.name for s in written] + list(constants)
    if len(set(names)) != len(names):
        raise fmt.bad(fmt.SCHEDULE, "a tensor is written twice (or a partition writes a plan input)")
    if len({s.name for s in outputs}) != len(outputs):
        raise fmt.bad(fmt.SCHEDULE, "a plan output is listed twice")
    spec = {s.name: s for s in written}
    for name, entry in constants.items():
        where = f"{fmt.SCHEDULE} constant {name!r}"
        spec[name] = TensorSpec(name, fmt.need_dtype(entry, "dtype", where), fmt.need_shape(entry, "shape", where))
    for reader, wanted in [("plan output", s) for s in outputs] + [
        (f"partition {p.id}", s) for p in partitions for s in p.inputs
    ]:
        if wanted.name not in spec:
            what = "plan output" if reader == "plan output" else f"{reader} reads"
            raise fmt.bad(fmt.SCHEDULE, f"{what} {wanted.name!r}, which is written by no partition")
        have = spec[wanted.name]
        if have != wanted:
            raise fmt.bad(fmt.SCHEDULE, f"{reader} {wanted.name!r} is not {have.dtype}{list(have.shape)} as written")
