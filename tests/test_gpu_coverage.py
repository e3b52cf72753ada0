"""The GPU's op coverage as issue 17 lists it (no device needed): every op exported transformers contain has a
GPU lowering, and placement reports every op the GPU cannot run with a one-line reason."""

from __future__ import annotations

import numpy as np
from gpu_harness import Builder

from codegen import unsupported_reason
from codegen.gpu.lowering import ALIAS_OPS, LOWERINGS

TRANSFORMER_OPS = (
    "IsNaN IsInf Not And Or Xor Where Equal Less Greater LessOrEqual GreaterOrEqual Cast Trilu Range CumSum Mod "
    "Floor Ceil Round Sin Cos Reciprocal ArgMax ReduceL2 ReduceProd Einsum Tile GatherElements GatherND ScatterND "
    "ScatterElements Expand Gather Slice Concat Split Transpose Reshape Unsqueeze Squeeze MatMul Gemm Softmax "
    "LayerNormalization RMSNormalization RotaryEmbedding Attention Add Sub Mul Div Pow Sqrt Erf Tanh Sigmoid Gelu "
    "Neg ReduceMean ReduceSum ReduceMax Max Min"
).split()


def test_every_transformer_op_has_a_gpu_lowering():
    missing = [op for op in TRANSFORMER_OPS if op not in LOWERINGS and op not in ALIAS_OPS]
    assert missing == []


def test_placement_gives_one_line_reasons():
    b = Builder()
    x = b.input("x", (4, 8))
    ops = [
        b.op("NonZero", [x], (2, 5), "int64"),  # no kernel at all
        b.op("Add", [b.input("h", (4, 8), "float16"), b.input("h2", (4, 8), "float16")], (4, 8), "float16"),
        b.op("ScatterND", [x, b.const("i", np.array([[1]])), b.input("u", (1, 8))], (4, 8), reduction="mul"),
        b.op("Einsum", [x, b.input("y", (8,))], (4,), equation="ij,k->i"),
    ]
    g = b.graph(ops)
    reasons = [unsupported_reason(g, op, "gpu") for op in g.ops]
    assert all(r and "\n" not in r for r in reasons), reasons
    assert "no GPU kernel for NonZero" in reasons[0] and "float16" in reasons[1]
    assert all(unsupported_reason(g, op, "cpu") is None for op in g.ops)
