"""Index-driven data movement on the GPU: GatherElements, GatherND, ScatterElements and ScatterND.

A Scatter* op is two dispatches: copy the data to the output, then write each update where its index points
(reduction "none" only: the others would need atomics or an ordered pass). Negative indices count from the end;
out-of-range ones are clamped so no kernel reads or writes outside its buffers.
"""

from __future__ import annotations

from codegen.gpu.lowering import Dispatch, attr, glsl_type, grid, lowers, numel, strides
from codegen.gpu.ops.movement import strided, typed_reason
from ragc.ir import Graph, Op

INDEX_TYPES = ("int32", "int64")


def _index_reason(graph: Graph, op: Op) -> str | None:
    if attr(op, "reduction", "none") != "none":
        return f"{op.op_type} with reduction {attr(op, 'reduction', '')!r} is not run on the GPU (duplicates race)"
    data = [n for k, n in enumerate(op.inputs) if k != 1]
    return typed_reason(graph, [op.inputs[1]], INDEX_TYPES) or typed_reason(graph, [*data, *op.outputs])


def _copy_data(graph: Graph, op: Op) -> Dispatch:
    data = graph.tensors[op.inputs[0]]
    return strided(op.outputs[0], data.name, data.dtype, [numel(data.shape)], [1])


def _elements(graph: Graph, op: Op, scatter: bool) -> Dispatch:
    """One invocation per index element: its coordinates, with the index replacing the one along `axis`."""
    data, indices = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    axis = attr(op, "axis", 0) % len(data.shape)
    steps = strides(data.shape)
    dims = [(size, steps[d], d == axis) for d, size in enumerate(indices.shape)]
    source = op.inputs[2] if scatter else data.name
    params = {
        "count": numel(indices.shape),
        "dims": dims,
        "axis_len": data.shape[axis],
        "scatter": scatter,
        "data_type": glsl_type(data.dtype),
        "index_type": glsl_type(indices.dtype),
    }
    return Dispatch("index_elements.comp.j2", params, (op.outputs[0], source, indices.name), grid(params["count"]))


@lowers("GatherElements", check=_index_reason)
def lower_gather_elements(graph: Graph, op: Op) -> list[Dispatch]:
    return [_elements(graph, op, scatter=False)]


@lowers("ScatterElements", check=_index_reason)
def lower_scatter_elements(graph: Graph, op: Op) -> list[Dispatch]:
    return [_copy_data(graph, op), _elements(graph, op, scatter=True)]


def _nd(graph: Graph, op: Op, scatter: bool, batch_dims: int) -> Dispatch:
    """One invocation per element of the gathered (scattered) slices: index tuple p selects a slice of `inner`."""
    data, indices = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    q = indices.shape[-1]
    sliced = data.shape[batch_dims:]
    positions = numel(indices.shape[batch_dims:-1])
    params = {
        "count": numel(indices.shape[:-1]) * numel(sliced[q:]),
        "inner": numel(sliced[q:]),
        "q": q,
        "sizes": list(sliced[:q]),
        "steps": strides(sliced)[:q],
        "positions": positions,
        "batch_stride": numel(sliced),
        "scatter": scatter,
        "data_type": glsl_type(data.dtype),
        "index_type": glsl_type(indices.dtype),
    }
    source = op.inputs[2] if scatter else data.name
    return Dispatch("index_nd.comp.j2", params, (op.outputs[0], source, indices.name), grid(params["count"]))


@lowers("GatherND", check=_index_reason)
def lower_gather_nd(graph: Graph, op: Op) -> list[Dispatch]:
    return [_nd(graph, op, scatter=False, batch_dims=attr(op, "batch_dims", 0))]


@lowers("ScatterND", check=_index_reason)
def lower_scatter_nd(graph: Graph, op: Op) -> list[Dispatch]:
    return [_copy_data(graph, op), _nd(graph, op, scatter=True, batch_dims=0)]
