"""GPU partitions to "spirv-v2" artifacts: fuse, lower each op to dispatches, compile kernels, lay out buffers.

The artifact holds one SPIR-V module per distinct kernel (`<sha256 prefix>.spv`, shared by every partition that
uses it) and `<pid>.gpu.json` (read by runtime_min/backends/gpu_program.py): the sizes of the regions "weights"
(uploaded once, each weight read from the bundle's tensor store) and "arena" (inputs, outputs and scratch, scratch
reused by lifetime), every tensor's region/offset/size, the dispatch list (kernel file, bound tensors, workgroup
counts, and "barrier": whether it must wait for the dispatches before it, see barriers.py), "requires": the
device properties every kernel relies on, and "kernel_requires": what each kernel's SPIR-V needs of the device.
A reduced-precision partition (precision.py) stores inner float tensors in 16 bits; bfloat16 tensors are written
as "uint16" (their bits) in the program.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from codegen.artifact import Artifact, TensorStore
from codegen.gpu import glsl
from codegen.gpu import ops as _ops  # noqa: F401  (registers the lowerings)
from codegen.gpu.barriers import barriers
from codegen.gpu.fuse import fuse
from codegen.gpu.lowering import ALIAS_OPS, CHECKS, LOWERINGS, Dispatch, LoweringError, numel
from codegen.gpu.patterns import fuse_patterns
from codegen.gpu.precision import NARROW_TEMPLATES, Precision, narrow
from ragc.ir import Graph, Op, updates_input_in_place
from runtime_min.backends.gpu_program import kernel_needs, spirv_scan
from runtime_min.format import ARTIFACT_FORMATS, GPU_ALIGN, align, dumps

FORMAT = ARTIFACT_FORMATS["gpu"]
# device properties every kernel relies on (VkPhysicalDeviceFloatControlsProperties: templates/_common.glsl.j2
# declares SignedZeroInfNanPreserve for 32-bit floats); a runtime refuses devices without them
REQUIRES = ("shaderSignedZeroInfNanPreserveFloat32",)


def _align(n: int) -> int:
    return align(n, GPU_ALIGN)  # covers every device's minStorageBufferOffsetAlignment


def _alias_reason(graph: Graph, op: Op) -> str | None:
    src, outs = graph.tensors[op.inputs[0]], op.outputs
    if op.op_type == "Dropout" and len(outs) > 1 and outs[1]:
        return "Dropout's mask output is not produced on the GPU"
    out = graph.tensors[outs[0]]
    if out.dtype != src.dtype or numel(out.shape) != numel(src.shape):
        return f"{op.op_type} changes dtype or size ({src.dtype}{src.shape} -> {out.dtype}{out.shape})"
    return None


def unsupported_reason(graph: Graph, op: Op) -> str | None:
    """None when the GPU can run this op instance, else a short reason."""
    if op.op_type in ALIAS_OPS:
        return _alias_reason(graph, op)
    if op.op_type not in LOWERINGS:
        return f"no GPU kernel for {op.op_type}"
    check = CHECKS.get(op.op_type)
    return check(graph, op) if check else None


@dataclass(frozen=True)
class Step:
    label: str  # the op (or fused op) it comes from
    dispatch: Dispatch


def lower(graph: Graph, precision: Precision | None = None) -> tuple[Graph, list[Step], dict[str, str]]:
    """The fused graph (with any temporaries lowerings added; inner tensors narrowed to `precision`'s storage), its
    dispatches in order, and alias tensor -> the tensor whose buffer it shares."""
    for op in graph.ops:
        reason = unsupported_reason(graph, op)
        if reason:
            raise LoweringError(f"op {op.name} ({op.op_type}) cannot run on the GPU: {reason}; place it elsewhere")
    fused = fuse(fuse_patterns(graph))
    fused, before = narrow(fused, precision or Precision()), fused.tensors  # before: the model's dtypes
    steps: list[Step] = []
    alias: dict[str, str] = {}
    readers = fused.consumers()
    for op in fused.ops:
        if op.op_type in ALIAS_OPS:
            alias[op.outputs[0]] = alias.get(op.inputs[0], op.inputs[0])
            continue
        dispatches = LOWERINGS[op.op_type](fused, op)
        if op.op_type == "ScatterND" and updates_input_in_place(fused, op, readers):
            # the updates go into the input's own buffer (the output shares it): no copy first, and an input kept
            # between runs (Executable.keep: a KV cache) is updated where it lives
            alias[op.outputs[0]], dispatches = op.inputs[0], dispatches[1:]
        steps.extend(Step(op.name, d) for d in dispatches)
    for step in steps:  # an internal check: 16-bit storage only through the kernels that convert
        if step.dispatch.template not in NARROW_TEMPLATES and any(
            fused.tensors[b].dtype != before.get(b, fused.tensors[b]).dtype for b in step.dispatch.buffers
        ):
            raise LoweringError(f"{step.label}: {step.dispatch.template} takes no 16-bit storage; fix NARROW_OPS")
    return fused, steps, alias


def _lifetimes(graph: Graph, steps: list[Step], alias: dict[str, str]) -> dict[str, tuple[int, int]]:
    """Root tensor -> (first, last) step using it; inputs and outputs live for the whole program."""
    spans: dict[str, tuple[int, int]] = {}
    for i, step in enumerate(steps):
        for name in step.dispatch.buffers:
            root = alias.get(name, name)
            first, _ = spans.get(root, (i, i))
            spans[root] = (first, i)
    for name in graph.inputs + graph.outputs:
        spans[alias.get(name, name)] = (-1, len(steps))
    return spans


def _pack(
    graph: Graph, spans: dict[str, tuple[int, int]], store: TensorStore
) -> tuple[dict[str, tuple[str, int]], dict[str, int], int, int]:
    """Offsets of root tensors in the weights and arena regions (arena: first fit by lifetime), each weight's
    offset in the tensor store, and the two region sizes."""
    where: dict[str, tuple[str, int]] = {}
    stored: dict[str, int] = {}
    live: list[tuple[int, int, int]] = []  # (offset, size, last step)
    weights = arena = 0
    for name, (first, last) in sorted(spans.items(), key=lambda kv: (kv[1][0], kv[0])):
        t = graph.tensors[name]
        if t.is_constant:
            where[name] = ("weights", weights)
            stored[name] = store.add(t.data.astype(t.dtype, copy=False))
            weights = _align(weights + t.nbytes)
            continue
        size = _align(t.nbytes)
        live = sorted(x for x in live if x[2] >= first)
        offset = 0
        for off, sz, _ in live:
            if offset + size <= off:
                break
            offset = max(offset, off + sz)
        live.append((offset, size, last))
        where[name] = ("arena", offset)
        arena = max(arena, offset + size)
    return where, stored, weights, arena


def _tensor_entry(
    graph: Graph, name: str, root: str, where: dict[str, tuple[str, int]], stored: dict[str, int]
) -> dict:
    t = graph.tensors[name]
    region, offset = where[root]
    dtype = "uint16" if t.dtype == "bfloat16" else t.dtype  # bf16 as its bits
    entry = {"dtype": dtype, "shape": list(t.shape), "nbytes": t.nbytes, "region": region, "offset": offset}
    if region == "weights":
        entry["store_offset"] = stored[root]
    return entry


def assemble(graph: Graph, steps: list[Step], alias: dict[str, str], partition_id: str, store: TensorStore) -> Artifact:
    """Compile the steps' kernels and lay out their buffers into a spirv-v2 artifact."""
    spans = _lifetimes(graph, steps, alias)
    where, stored, weights_bytes, arena_bytes = _pack(graph, spans, store)
    names = sorted({n for s in steps for n in s.dispatch.buffers} | set(graph.inputs) | set(graph.outputs))
    tensors = {n: _tensor_entry(graph, n, alias.get(n, n), where, stored) for n in names}
    files: dict[str, bytes] = {}
    needs: dict[str, list[str]] = {}
    dispatches = []
    waits = barriers([(s.dispatch.buffers, s.dispatch.writes) for s in steps], tensors)
    for step, wait in zip(steps, waits, strict=True):
        d = step.dispatch
        dtypes = tuple(graph.tensors[b].dtype for b in d.buffers)
        spirv = glsl.build(d.template, {**d.params, "ragc_dtypes": dtypes})
        kernel = f"{hashlib.sha256(spirv).hexdigest()[:24]}.spv"
        files[kernel] = spirv
        needs[kernel] = sorted({*kernel_needs(spirv_scan(spirv, kernel)[1]), *d.requires})
        entry = {"label": step.label, "kernel": kernel, "bindings": list(d.buffers), "groups": list(d.groups)}
        dispatches.append(entry | {"barrier": wait} | ({"subgroup_size": d.subgroup} if d.subgroup else {}))
    program_file = f"{partition_id}.gpu.json"
    program = {
        "version": 2,
        "requires": list(REQUIRES),
        "kernel_requires": needs,
        "weights_bytes": weights_bytes,
        "arena_bytes": arena_bytes,
        "inputs": list(graph.inputs),
        "outputs": list(graph.outputs),
        "tensors": tensors,
        "dispatches": dispatches,
    }
    files[program_file] = dumps(program)
    return Artifact(format=FORMAT, files=files, meta={"program": program_file}, store=store)


def emit(
    sub: Graph, partition_id: str, store: TensorStore | None = None, precision: Precision | None = None
) -> Artifact:
    """The spirv-v2 artifact of one GPU partition, its weights added to `store` (a new one when None), at
    `precision` (fp32 when None; meta "precision" names it); raises LoweringError naming an op the GPU cannot run."""
    precision = precision or Precision()
    fused, steps, alias = lower(sub, precision)
    artifact = assemble(fused, steps, alias, partition_id, store if store is not None else TensorStore())
    artifact.meta["precision"] = precision.name
    return artifact


def storage_plan(sub: Graph, precision: Precision) -> dict[str, str]:
    """The partition's tensors the GPU stores in 16 bits at `precision`, with their storage dtype."""
    fused, _, _ = lower(sub, precision)
    return {n: t.dtype for n, t in fused.tensors.items() if n in sub.tensors and t.dtype != sub.tensors[n].dtype}
