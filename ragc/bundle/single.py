"""One partition as a bundle of its own, for the tools that load a single artifact on a backend without a whole
plan (the profiler's GPU micro-benchmarks, kernel tests, the GEMM benchmark)."""

from __future__ import annotations

from pathlib import Path

from codegen.artifact import Artifact
from ragc import ir
from runtime_min.format import TENSOR_STORE
from runtime_min.manifest import Artifact as ArtifactEntry
from runtime_min.manifest import Bundle, Partition, TensorSpec, TensorStore


def single_partition(
    artifact: Artifact, graph: ir.Graph, folder: Path, device: str, pid: str = "p1"
) -> tuple[Partition, Bundle]:
    """Write `artifact` (and its tensor store) into `folder`; the partition and bundle a backend's prepare takes."""
    folder = Path(folder)
    files = dict(artifact.files)
    if artifact.store is not None:
        files[TENSOR_STORE] = artifact.store.data()
    for name, data in files.items():
        (folder / name).write_bytes(data)

    def specs(names: list[str]) -> tuple[TensorSpec, ...]:
        return tuple(TensorSpec(n, graph.tensors[n].dtype, tuple(graph.tensors[n].shape)) for n in names)

    main = artifact.meta.get("model") or artifact.meta["program"]
    entry = ArtifactEntry(artifact.format, tuple(sorted(artifact.files)), main)
    part = Partition(
        pid, device, tuple(op.name for op in graph.ops), specs(graph.inputs), specs(graph.outputs), entry, None, None
    )
    manifest = {"files": dict.fromkeys(files, "")}
    store = TensorStore(folder / TENSOR_STORE if TENSOR_STORE in files else None)
    return part, Bundle(folder, manifest, {}, list(part.inputs), list(part.outputs), [part], {}, {}, store)
