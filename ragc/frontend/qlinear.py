"""QOperator int8 models' standard ops (QLinearConv, QLinearMatMul) as float ops, as ragc.frontend.qdq does for QDQ.

Each int8 tensor between them is carried as the float value it stands for, (q - zp) * scale, on its grid: a
QuantizeLinear gives it by the fake-quant chain, a QLinearConv/QLinearMatMul computes Conv/MatMul on the float
values (constant weights and the int32 bias dequantized here) and rounds the result onto its output's grid, and a
DequantizeLinear reads it as it is. An int8 tensor still read by anything else (a com.microsoft QLinear op, a graph
output) is made again by a QuantizeLinear of its float value, which is exact; onnxruntime runs that on the CPU.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from ragc.frontend import gs_bridge
from ragc.frontend.qdq import dequantize, fake_quant, per_tensor, same, scale_and_zero, values

FLOAT_OP = {"QLinearConv": "Conv", "QLinearMatMul": "MatMul"}
Grid = tuple[np.ndarray, np.ndarray]  # (scale, zero point)


def _grid(node: gs.Node, i: int) -> Grid | None:
    """The constant (scale, zero point) at inputs i and i + 1 of a QLinear op."""
    scale, zero = values(node.inputs[i]), values(node.inputs[i + 1])
    return None if scale is None or zero is None else (scale, zero)


def _float_of(graph: gs.Graph, floats: dict[str, tuple[gs.Tensor, Grid]], t: gs.Tensor, grid: Grid, axis: int):
    """The float value of the int8 tensor `t`: a constant dequantized here, the carried one, or a DequantizeLinear."""
    if values(t) is not None:
        return gs.Constant(f"{t.name}.dequantized", dequantize(values(t), *grid, axis=axis))
    if t.name in floats and same(floats[t.name][1], grid):
        return floats[t.name][0]
    out = gs.Variable(f"{t.name}.dequantized", dtype=grid[0].dtype, shape=t.shape)
    scale, zero = (gs.Constant(f"{t.name}.dq.{k}", v) for k, v in zip(("s", "z"), grid, strict=True))
    graph.nodes.append(gs.Node("DequantizeLinear", f"{t.name}.dq", inputs=[t, scale, zero], outputs=[out]))
    return out


def _lower(graph: gs.Graph, node: gs.Node, floats: dict[str, tuple[gs.Tensor, Grid]]) -> bool:
    """One QLinearConv/QLinearMatMul as its float op and fake-quant chain; False when it is left as it is."""
    grids = [_grid(node, i) for i in (1, 4, 6)]
    if any(g is None for g in grids) or not per_tensor(grids[0]) or not per_tensor(grids[2]):
        return False
    a_grid, b_grid, y_grid = grids
    axis = 0 if node.op == "QLinearConv" else -1  # per output channel / per output column
    inputs = [
        _float_of(graph, floats, node.inputs[0], a_grid, 1),
        _float_of(graph, floats, node.inputs[3], b_grid, axis),
    ]
    if len(node.inputs) > 8:  # QLinearConv's int32 bias, scale a_scale * w_scale
        bias = values(node.inputs[8])
        if bias is None:
            return False
        scale = (a_grid[0] * b_grid[0]).astype(a_grid[0].dtype)
        inputs.append(gs.Constant(f"{node.outputs[0].name}.bias", dequantize(bias, scale, np.zeros_like(bias), axis=0)))
    y = node.outputs[0]
    base = node.name or y.name  # quantizers leave names out; the loader names nodes only after the passes
    raw = gs.Variable(f"{base}.float", dtype=y_grid[0].dtype, shape=y.shape)
    graph.nodes.append(gs.Node(FLOAT_OP[node.op], f"{base}.float", node.attrs, inputs, [raw]))
    floats[y.name] = (fake_quant(graph, raw, base, *y_grid), y_grid)
    node.outputs = []
    if y.outputs or y in graph.outputs:  # still read as int8
        s, z = (gs.Constant(f"{y.name}.q.{k}", v) for k, v in zip(("s", "z"), y_grid, strict=True))
        graph.nodes.append(gs.Node("QuantizeLinear", f"{y.name}.q", inputs=[floats[y.name][0], s, z], outputs=[y]))
    return True


def lower_qlinear(graph: gs.Graph) -> gs.Graph:
    """QuantizeLinear -> QLinearConv/QLinearMatMul ... -> DequantizeLinear regions as float ops on the int8 grid."""
    floats: dict[str, tuple[gs.Tensor, Grid]] = {}
    for node in list(graph.nodes):  # topologically sorted by the pass before
        if node.op == "QuantizeLinear" and per_tensor(scale_and_zero(node)) and values(node.inputs[0]) is None:
            grid = scale_and_zero(node)
            floats[node.outputs[0].name] = (
                fake_quant(graph, node.inputs[0], node.name or node.outputs[0].name, *grid),
                grid,
            )
        elif node.op in FLOAT_OP and node.inputs[0].name in floats:
            _lower(graph, node, floats)
        elif node.op == "DequantizeLinear" and node.inputs[0].name in floats:
            carried, grid = floats[node.inputs[0].name]
            if same(grid, scale_and_zero(node)):  # remove_inference_noops drops the Identity
                node.op, node.inputs, node.attrs = "Identity", [carried], {}
    return gs_bridge.cleanup(graph)
