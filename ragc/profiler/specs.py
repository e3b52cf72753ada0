"""The micro-benchmark set: one-op graphs per op family at shapes that span real models (CNNs from the onnx zoo,
transformer blocks), plus seeded random shapes in full mode."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from codegen.onnx_graph import graph_model
from ragc.ir import Graph, Op, Tensor
from ragc.profiler.oneop import make_session, random_feeds

Input = tuple[tuple[int, ...], bool]  # (shape, is a constant weight); float32 unless the spec says int64


def bench_graph(
    op_type: str, inputs: list[Input | np.ndarray], attrs: dict[str, Any] | None = None, n_outputs: int = 1
) -> Graph:
    """A one-op ir.Graph; output shapes come from running it once. An ndarray input is a constant as given."""
    rng = np.random.default_rng(len(inputs))
    tensors: dict[str, Tensor] = {}
    names, graph_inputs = [], []
    for i, spec in enumerate(inputs):
        name = f"in{i}"
        if isinstance(spec, np.ndarray):
            tensors[name] = Tensor(name, tuple(spec.shape), str(spec.dtype), spec)
        else:
            shape, const = spec
            data = rng.uniform(-0.1, 0.1, shape).astype(np.float32) if const else None
            tensors[name] = Tensor(name, tuple(shape), "float32", data)
            if not const:
                graph_inputs.append(name)
        names.append(name)
    outs = [f"out{i}" for i in range(n_outputs)]
    tensors.update({o: Tensor(o, (), "float32") for o in outs})
    graph = Graph([Op("op", op_type, names, outs, dict(attrs or {}))], tensors, graph_inputs, outs, opset=17)
    results = make_session(graph_model(graph, with_output_shapes=False)).run(None, random_feeds(graph))
    for name, value in zip(outs, results, strict=True):
        tensors[name] = Tensor(name, tuple(value.shape), str(value.dtype))
    return graph


def chained(graph: Graph, n: int) -> Graph:
    """n copies of a one-op graph's op in a row, each reading the one before (its first input; the others shared);
    the op must keep its first input's shape."""
    op = graph.ops[0]
    chain = Graph([op], dict(graph.tensors), list(graph.inputs), list(op.outputs), graph.opset)
    for i in range(1, n):
        out = f"{op.outputs[0]}_{i}"
        chain.ops.append(Op(f"{op.name}_{i}", op.op_type, [chain.outputs[0], *op.inputs[1:]], [out], dict(op.attrs)))
        chain.tensors[out] = graph.tensors[op.outputs[0]]
        chain.outputs = [out]
    return chain


def projection_chain(rows: int, k: int, n: int, length: int = 16) -> Graph:
    """`length` transformer projections back to back, (1, rows, k) by a (k, n) weight then by a (n, k) one in turn:
    GEMMs timed while the GPU is busy, as inside a model (one-op runs leave it idle, and on the H200 its clock and
    the kernels' times followed: 2.4-3.6x slower in a quick profile than alone)."""
    rng = np.random.default_rng(rows * k + n)
    tensors = {"x": Tensor("x", (1, rows, k), "float32")}
    for name, shape in (("wa", (k, n)), ("wb", (n, k))):
        bound = float(np.sqrt(3.0 / shape[0]))  # unit gain: values neither grow nor vanish along the chain
        tensors[name] = Tensor(name, shape, "float32", rng.uniform(-bound, bound, shape).astype(np.float32))
    ops, current = [], "x"
    for i in range(length):
        weight, width = ("wa", n) if i % 2 == 0 else ("wb", k)
        tensors[f"y{i}"] = Tensor(f"y{i}", (1, rows, width), "float32")
        ops.append(Op(f"projection_{i}", "MatMul", [current, weight], [f"y{i}"], {}))
        current = f"y{i}"
    return Graph(ops, tensors, ["x"], [current], opset=17)


def projection_chains(quick: bool) -> list[tuple[str, Graph]]:
    """The GPU's whole-model GEMM runs: a chain per transformer projection shape (every other one when quick)."""
    shapes = PROJECTION[:: 2 if quick else 1]
    return [(f"projection chain {r}x{k}<->{n}", projection_chain(r, k, n)) for r, k, n in shapes]


def conv(c: int, hw: int, k: int, kernel: int, stride: int = 1, group: int = 1) -> Graph:
    pad = kernel // 2
    return bench_graph(
        "Conv",
        [((1, c, hw, hw), False), ((k, c // group, kernel, kernel), True), ((k,), True)],
        {"kernel_shape": [kernel, kernel], "strides": [stride, stride], "pads": [pad] * 4, "group": group},
    )


def gemm(m: int, k: int, n: int) -> Graph:
    return bench_graph("Gemm", [((m, k), False), ((n, k), True), ((n,), True)], {"transB": 1})


def matmul(a: tuple[int, ...], b: tuple[int, ...], b_const: bool = True) -> Graph:
    return bench_graph("MatMul", [(a, False), (b, b_const)])


def unary(op_type: str, n: int, **attrs: Any) -> Graph:
    return bench_graph(op_type, [((1, n), False)], attrs)


def binary(op_type: str, shape: tuple[int, ...], other: tuple[int, ...]) -> Graph:
    return bench_graph(op_type, [(shape, False), (other, False)])


def pool(op_type: str, c: int, hw: int, kernel: int = 3, stride: int = 2) -> Graph:
    attrs = {} if op_type.startswith("Global") else {"kernel_shape": [kernel, kernel], "strides": [stride, stride]}
    return bench_graph(op_type, [((1, c, hw, hw), False)], attrs)


def layernorm(rows: int, d: int) -> Graph:
    return bench_graph("LayerNormalization", [((1, rows, d), False), ((d,), True), ((d,), True)], {"axis": -1})


def ints(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


# fmt: off
CONV = [(3, 224, 64, 7, 2), (64, 56, 64, 3, 1), (64, 56, 256, 1, 1), (256, 56, 64, 1, 1), (128, 28, 128, 3, 1),
        (256, 14, 256, 3, 1), (512, 7, 512, 3, 1), (3, 224, 32, 3, 2), (32, 112, 16, 1, 1), (96, 56, 24, 1, 1),
        (144, 28, 32, 1, 1), (384, 14, 64, 1, 1), (1024, 14, 256, 1, 1), (512, 28, 128, 1, 1), (64, 56, 192, 3, 1),
        (192, 28, 64, 1, 1), (96, 28, 128, 3, 1), (16, 28, 32, 5, 1), (256, 13, 384, 3, 1), (3, 224, 96, 11, 4)]
CONV_DW = [(32, 112, 3, 1), (96, 112, 3, 2), (144, 56, 3, 1), (240, 28, 5, 1), (480, 14, 3, 1), (960, 7, 3, 1),
           (672, 14, 5, 2), (24, 56, 3, 1)]
GROUPED = [(240, 28, 60, 1, 3), (60, 28, 240, 1, 3), (480, 14, 120, 1, 3), (128, 56, 128, 3, 32),
           (256, 28, 256, 3, 8), (120, 56, 30, 1, 3), (136, 28, 136, 1, 4), (272, 14, 272, 1, 4), (68, 56, 68, 1, 4),
           (544, 7, 544, 1, 4)]
GEMM = [(1, 9216, 4096), (1, 4096, 1000), (1, 1024, 1000), (1, 2048, 1000), (1, 512, 1000), (128, 768, 768),
        (128, 768, 3072), (128, 3072, 768), (197, 384, 1152), (64, 256, 256), (32, 128, 512)]
MATMUL = [((12, 128, 64), (12, 64, 128)), ((12, 128, 128), (12, 128, 64)), ((6, 197, 64), (6, 64, 197)),
          ((4, 64, 64), (4, 64, 64))]
# (rows, in, out) of transformer projections: activations (1, rows, in) times a constant (in, out) weight
PROJECTION = [(128, 768, 2304), (128, 3072, 768), (197, 384, 1536), (64, 512, 2048), (256, 1024, 1024),
              (128, 256, 768), (197, 1536, 384), (64, 2048, 512), (128, 1024, 4096), (32, 768, 768)]
# (channels, size) of typical CNN stages, from mobile to classic widths: 1x1, 3x3 and depthwise convs at each
STAGES = [(16, 112), (32, 112), (32, 56), (64, 56), (128, 28), (256, 14), (512, 7)]
# (channels, size): per-channel scale and shift of unfolded batch norms (densenet's after-concat norms)
CHANNEL_AFFINE = [(64, 112), (128, 56), (256, 28), (512, 14), (1024, 7), (96, 56), (480, 28)]
# fmt: on
ELEMENTWISE_SIZES = [1_000, 30_000, 200_000, 800_000, 3_200_000]


def cpu_specs(quick: bool) -> Iterator[tuple[str, Graph]]:
    """(label, one-op graph) pairs; quick keeps about one in three of the fixed shapes and no random ones."""
    step = 3 if quick else 1
    for c, hw, k, kernel, stride in CONV[::step]:
        yield f"conv {c}x{hw}->{k} k{kernel}s{stride}", conv(c, hw, k, kernel, stride)
    for c, hw, kernel, stride in CONV_DW[::step]:
        yield f"conv_dw {c}x{hw} k{kernel}s{stride}", conv(c, hw, c, kernel, stride, group=c)
    for i, (c, hw) in enumerate(STAGES):
        for kernel, stride, group in ((1, 1, 1), (3, 1, 1), (3, 1, c), (3, 2, c)):
            if not quick or (i + kernel + stride) % 2 == 0:
                yield f"stage conv {c}x{hw} k{kernel}s{stride} g{group}", conv(c, hw, c, kernel, stride, group)
    for c, hw, k, kernel, group in GROUPED:
        yield f"conv grouped {c}x{hw}->{k} k{kernel} g{group}", conv(c, hw, k, kernel, 1, group=group)
    for m, k, n in GEMM[:: 2 if quick else 1]:
        yield f"gemm {m}x{k}x{n}", gemm(m, k, n)
    for a, b in MATMUL[:: 2 if quick else 1]:
        yield f"matmul {a}x{b}", matmul(a, b, b_const=False)
    for rows, k, n in PROJECTION[:: 2 if quick else 1]:
        yield f"projection {rows}x{k}->{n}", matmul((1, rows, k), (k, n))
    for c, hw in CHANNEL_AFFINE[:: 2 if quick else 1]:
        for op in ("Mul", "Add"):
            yield f"{op}-channel {c}x{hw}", bench_graph(op, [((1, c, hw, hw), False), ((c, 1, 1), True)])
    for n in ELEMENTWISE_SIZES[:: 2 if quick else 1]:
        for op in ("Relu", "Sigmoid", "Erf") if quick else ("Relu", "Sigmoid", "Erf", "Tanh", "Exp", "Sqrt"):
            yield f"{op} {n}", unary(op, n)
        for op in ("Add", "Mul") if quick else ("Add", "Mul", "Div", "Sub"):
            yield f"{op} {n}", binary(op, (1, n), (1, n))
        yield f"Add-bcast {n}", binary("Add", (1, n // 8, 8), (8,))
        yield f"Mul-channel {n}", bench_graph("Mul", [((1, 64, n // 64), False), ((64, 1), True)])
    yield from _pool_specs(quick)
    yield from _transformer_specs(quick)
    yield from _movement_specs(quick)
    if not quick:
        yield from _random_specs(np.random.default_rng(17), 40)


def _pool_specs(quick: bool) -> Iterator[tuple[str, Graph]]:
    shapes = [(64, 112), (192, 56), (480, 28), (832, 14), (24, 112), (96, 56)][:: 2 if quick else 1]
    for c, hw in shapes:
        yield f"MaxPool {c}x{hw}", pool("MaxPool", c, hw)
        yield f"AveragePool {c}x{hw}", pool("AveragePool", c, hw, 3, 1)
    for c, hw in [(2048, 7), (1280, 7), (1024, 7), (512, 13)][:: 2 if quick else 1]:
        yield f"GlobalAveragePool {c}x{hw}", pool("GlobalAveragePool", c, hw)
    for c, hw in [(96, 55), (64, 56), (96, 110), (256, 27), (192, 28)][:: 2 if quick else 1]:
        yield f"LRN {c}x{hw}", bench_graph("LRN", [((1, c, hw, hw), False)], {"size": 5})
    for c, hw in [(64, 56), (256, 28), (512, 7)][:: 2 if quick else 1]:
        yield f"BatchNorm {c}x{hw}", bench_graph("BatchNormalization", [((1, c, hw, hw), False)] + [((c,), True)] * 4)


def _transformer_specs(quick: bool) -> Iterator[tuple[str, Graph]]:
    for rows, d in [(128, 768), (197, 384), (64, 256), (512, 1024)][:: 2 if quick else 1]:
        yield f"LayerNorm {rows}x{d}", layernorm(rows, d)
        yield f"ReduceMean {rows}x{d}", bench_graph("ReduceMean", [((1, rows, d), False)], {"axes": [-1]})
    for shape in [(1, 1000), (12, 128, 128), (6, 197, 197), (4, 64, 64)][:: 2 if quick else 1]:
        yield f"Softmax {shape}", bench_graph("Softmax", [(shape, False)], {"axis": -1})
    yield "ReduceSum 64x56x56", bench_graph("ReduceSum", [((1, 64, 56, 56), False), ints(2, 3)])


def _movement_specs(quick: bool) -> Iterator[tuple[str, Graph]]:
    yield "Transpose heads 128x12x64", bench_graph("Transpose", [((1, 128, 12, 64), False)], {"perm": [0, 2, 1, 3]})
    yield "Transpose nhwc 64x56", bench_graph("Transpose", [((1, 64, 56, 56), False)], {"perm": [0, 2, 3, 1]})
    yield "Concat 4x64x28", bench_graph("Concat", [((1, 64, 28, 28), False)] * 4, {"axis": 1})
    yield "Slice 256x28", bench_graph("Slice", [((1, 256, 28, 28), False), ints(0), ints(128), ints(1)])
    yield (
        "Gather embed 128 of 30522x256",
        bench_graph("Gather", [((30522, 256), True), np.arange(128, dtype=np.int64).reshape(1, 128)], {"axis": 0}),
    )
    if not quick:
        yield "Concat 2x128x56", bench_graph("Concat", [((1, 128, 56, 56), False)] * 2, {"axis": 1})
        yield "Pad 64x56", bench_graph("Pad", [((1, 64, 56, 56), False), ints(0, 0, 1, 1, 0, 0, 1, 1)])
        yield "Split 3x768", bench_graph("Split", [((1, 128, 2304), False)], {"axis": -1}, n_outputs=3)
        yield (
            "Transpose shuffle 4x60x28",
            bench_graph("Transpose", [((1, 4, 60, 28, 28), False)], {"perm": [0, 2, 1, 3, 4]}),
        )


def _random_specs(rng: np.random.Generator, count: int) -> Iterator[tuple[str, Graph]]:
    """Random conv, gemm and elementwise shapes between the fixed ones, so the learned model interpolates."""
    for i in range(count):
        kind = i % 4
        if kind == 0:
            c, k = (int(x) for x in rng.choice([16, 32, 48, 64, 96, 128, 192, 256, 384], 2))
            hw, kernel = int(rng.choice([7, 14, 28, 56])), int(rng.choice([1, 3, 5]))
            yield f"conv rand {c}x{hw}->{k} k{kernel}", conv(c, hw, k, kernel, int(rng.choice([1, 2])))
        elif kind == 1:
            c, hw = int(rng.choice([32, 64, 128, 256, 512])), int(rng.choice([7, 14, 28, 56]))
            yield f"conv_dw rand {c}x{hw}", conv(c, hw, c, int(rng.choice([3, 5])), int(rng.choice([1, 2])), c)
        elif kind == 2:
            m, k, n = (int(x) for x in rng.choice([1, 16, 64, 128, 256, 512, 1024], 3))
            yield f"gemm rand {m}x{k}x{n}", gemm(m, k, n)
        else:
            n = int(rng.integers(1_000, 2_000_000))
            op = str(rng.choice(["Add", "Mul", "Relu", "Sigmoid", "Clip"]))
            graph = binary(op, (1, n), (1, n)) if op in ("Add", "Mul") else unary(op, n)
            yield f"{op} rand {n}", graph


def chain(n: int) -> Graph:
    """n tiny Softmax ops in a row (nothing fuses them): their time minus one's is n-1 in-graph per-op overheads."""
    return chained(unary("Softmax", 1, axis=-1), n)
