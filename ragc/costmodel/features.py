"""Operator features: the numbers the cost model reads (family, FLOPs, bytes moved, shape and kernel parameters)."""

from __future__ import annotations

import math

import numpy as np

from ragc.ir import Graph, Op

FAMILIES = (
    "conv",
    "conv_dw",
    "gemm",
    "attention",
    "elementwise",
    "pool",
    "softmax",
    "norm",
    "reduce",
    "movement",
    "metadata",
)

_FAMILY_OF = {
    **dict.fromkeys(("Conv", "ConvTranspose", "ConvInteger", "QLinearConv"), "conv"),
    **dict.fromkeys(("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul", "Einsum"), "gemm"),
    **dict.fromkeys(
        ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "GlobalLpPool", "MaxRoiPool", "LRN"),
        "pool",
    ),
    "Attention": "attention",  # opset 23's (the com.microsoft attention ops are lowered by the front end)
    **dict.fromkeys(("Softmax", "LogSoftmax", "Hardmax"), "softmax"),
    **dict.fromkeys(
        (
            "LayerNormalization",
            "BatchNormalization",
            "InstanceNormalization",
            "GroupNormalization",
            "LpNormalization",
            "MeanVarianceNormalization",
            "RMSNormalization",
            "SimplifiedLayerNormalization",
        ),
        "norm",
    ),
    **dict.fromkeys(
        (
            "ReduceMean",
            "ReduceSum",
            "ReduceMax",
            "ReduceMin",
            "ReduceProd",
            "ReduceL1",
            "ReduceL2",
            "ReduceLogSum",
            "ReduceLogSumExp",
            "ReduceSumSquare",
            "ArgMax",
            "ArgMin",
            "TopK",
            "CumSum",
        ),
        "reduce",
    ),
    **dict.fromkeys(
        (
            "Transpose",
            "Concat",
            "Split",
            "Slice",
            "Gather",
            "GatherElements",
            "GatherND",
            "Scatter",
            "ScatterND",
            "ScatterElements",
            "Pad",
            "Tile",
            "Expand",
            "Resize",
            "Upsample",
            "DepthToSpace",
            "SpaceToDepth",
            "Where",
            "Cast",
            "ReverseSequence",
            "Trilu",
            "OneHot",
            "Compress",
        ),
        "movement",
    ),
    **dict.fromkeys(
        (
            "Reshape",
            "Flatten",
            "Squeeze",
            "Unsqueeze",
            "Identity",
            "Shape",
            "Size",
            "Dropout",
            "Constant",
            "ConstantOfShape",
            "EyeLike",
            "Range",
        ),
        "metadata",
    ),
}

# Elementwise ops whose per-element work is a transcendental function (several FLOPs each).
_TRANSCENDENTAL = {
    "Exp",
    "Log",
    "Erf",
    "Tanh",
    "Sigmoid",
    "Gelu",
    "Pow",
    "Sqrt",
    "Softplus",
    "Softsign",
    "Sin",
    "Cos",
    "HardSwish",
    "Mish",
    "Elu",
    "Selu",
    "Celu",
    "Reciprocal",
    "Div",
    "Swish",
    "FastGelu",
}
_FLOPS_PER_ELEMENT = {"softmax": 5.0, "norm": 8.0, "reduce": 1.0}

# Elementwise ops onnxruntime and ragc's GPU codegen fold into the producing conv/gemm as an epilogue.
_EPILOGUE_OPS = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "Add", "Sum", "Mul"}
_EPILOGUE_PRODUCERS = {"Conv", "Gemm", "MatMul", "ConvTranspose"}

_ROW_READS = {"Gather", "GatherElements", "GatherND"}

NUMERIC_KEYS = (
    "flops",
    "bytes_in",
    "bytes_out",
    "weight_bytes",
    "in_elems",
    "out_elems",
    "intensity",
    "N",
    "C",
    "H",
    "W",
    "K",
    "kh",
    "kw",
    "kernel",
    "stride",
    "groups",
    "gemm_m",
    "gemm_k",
    "gemm_n",
    "batch",
    "transcendental",
    "n_inputs",
    "rank",
    "bcast_ratio",
    "bcast_inner",
    "aligned16",
)


def op_family(op_type: str) -> str:
    """The cost family of an op type; unknown types are treated as memory-bound elementwise work."""
    return _FAMILY_OF.get(op_type, "elementwise")


def _elems(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _family(graph: Graph, op: Op) -> str:
    fam = op_family(op.op_type)
    if fam == "conv" and op.op_type == "Conv":
        group = int(op.attrs.get("group", 1))
        x = graph.tensors[op.inputs[0]]
        if group > 1 and len(x.shape) > 1 and group == x.shape[1]:
            return "conv_dw"
    return fam


def _attention_flops(ins: list) -> float:
    """QK^T and P.V of an attention op on (batch, [heads,] seq, width) query and key/value: 4 per query element
    and key position, with the softmax's 5 per score (one per head-width of query elements)."""
    if len(ins) < 2 or len(ins[0].shape) < 3:
        return 0.0
    q, keys = ins[0].shape, ins[1].shape[-2]
    return 4.0 * _elems(q) * keys + 5.0 * _elems(q[:-1]) * keys


def _conv_params(graph: Graph, op: Op) -> dict[str, float]:
    x, w = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    y = graph.tensors[op.outputs[0]]
    spatial = list(w.shape[2:]) or [1]
    kh, kw = spatial[0], (spatial[1] if len(spatial) > 1 else 1)
    strides = op.attrs.get("strides") or [1]
    group = int(op.attrs.get("group", 1))
    n, c = x.shape[0], x.shape[1]
    h = x.shape[2] if len(x.shape) > 2 else 1
    wd = x.shape[3] if len(x.shape) > 3 else 1
    kernel = int(np.prod(spatial))
    if op.op_type == "ConvTranspose":
        flops = 2.0 * _elems(x.shape) * w.shape[1] * kernel
        k = w.shape[1] * group
    else:
        flops = 2.0 * _elems(y.shape) * (c // group) * kernel
        k = w.shape[0]
    return {
        "flops": flops,
        "N": n,
        "C": c,
        "H": h,
        "W": wd,
        "K": k,
        "kh": kh,
        "kw": kw,
        "kernel": kernel,
        "stride": float(max(strides)),
        "groups": group,
    }


def _gemm_params(graph: Graph, op: Op) -> dict[str, float]:
    a, b = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    if op.op_type == "Gemm":
        m = a.shape[1] if op.attrs.get("transA", 0) else a.shape[0]
        k = a.shape[0] if op.attrs.get("transA", 0) else a.shape[1]
        n = b.shape[0] if op.attrs.get("transB", 0) else b.shape[1]
        batch = 1
    else:
        y = graph.tensors[op.outputs[0]]
        m = y.shape[-2] if len(y.shape) > 1 else 1
        n = y.shape[-1]
        k = a.shape[-1]
        batch = _elems(y.shape) // max(1, m * n)
        if len(b.shape) >= 2 and _elems(b.shape[:-2]) == 1:  # one B for all: a taller GEMM (codegen folds it)
            m, batch = m * batch, 1
    return {"flops": 2.0 * batch * m * k * n, "gemm_m": m, "gemm_k": k, "gemm_n": n, "batch": batch}


def _aligned16(feats: dict[str, float], outs: list, fam: str) -> float:
    """1 when the channels (per group) fill whole 16-lane vector blocks, which blocked-layout kernels need."""
    if fam in ("conv", "conv_dw"):
        g = max(1.0, feats["groups"])
        if fam == "conv_dw":
            return float(feats["C"] % 16 == 0)
        return float((feats["C"] / g) % 16 == 0 and (feats["K"] / g) % 16 == 0)
    if fam == "pool":
        return float(feats["C"] % 16 == 0)
    return float(bool(outs) and bool(outs[0].shape) and outs[0].shape[-1] % 16 == 0)


def _broadcast(ins: list, out_shape: tuple[int, ...]) -> dict[str, float]:
    """How the smallest input is stretched to the output: the ratio of sizes, and the length of the contiguous
    run each of its elements covers (H*W for a per-channel scale, 1 for a vector repeated along the last axis)."""
    small = min(ins, key=lambda t: _elems(t.shape))
    if _elems(small.shape) in (0, _elems(out_shape)):
        return {"bcast_ratio": 1.0, "bcast_inner": 0.0}
    shape = (1,) * (len(out_shape) - len(small.shape)) + tuple(small.shape)
    inner = 1
    for dim, full in zip(reversed(shape), reversed(out_shape), strict=False):
        if dim != 1:
            break
        inner *= full
    return {"bcast_ratio": _elems(out_shape) / max(1, _elems(small.shape)), "bcast_inner": float(inner)}


def _pool_params(graph: Graph, op: Op) -> dict[str, float]:
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    if op.op_type.startswith("Global"):
        kernel = _elems(x.shape[2:])
        strides = [1]
    elif op.op_type == "LRN":  # a window across channels, with a power per element
        kernel = int(op.attrs.get("size", 1)) + 8
        strides = [1]
    else:
        kernel = int(np.prod(op.attrs.get("kernel_shape", [1])))
        strides = op.attrs.get("strides") or [1]
    return {
        "flops": float(_elems(y.shape) * kernel),
        "N": x.shape[0],
        "C": x.shape[1] if len(x.shape) > 1 else 1,
        "H": x.shape[2] if len(x.shape) > 2 else 1,
        "W": x.shape[3] if len(x.shape) > 3 else 1,
        "kernel": kernel,
        "stride": float(max(strides)),
    }


def epilogue_ops(graph: Graph) -> set[str]:
    """Names of ops that runtimes fold into the conv or gemm feeding them: chains of activations, bias or residual
    adds and constant scales whose first op reads a conv/gemm output that nothing else reads."""
    return set(epilogue_sources(graph))


def epilogue_sources(graph: Graph) -> dict[str, str]:
    """Epilogue op (see epilogue_ops) -> the op whose output it reads: the conv/gemm or the epilogue before it."""
    producers, consumers = graph.producers(), graph.consumers()
    fused: dict[str, str] = {}
    for op in graph.ops:
        if op.op_type not in _EPILOGUE_OPS:
            continue
        if op.op_type == "Mul" and not any(n and graph.tensors[n].is_constant for n in op.inputs):
            continue
        for name in op.inputs:
            producer = producers.get(name) if name else None
            if (
                producer is not None
                and len(consumers[name]) == 1
                and (producer.op_type in _EPILOGUE_PRODUCERS or producer.name in fused)
            ):
                fused[op.name] = producer.name
                break
    return fused


def op_features(graph: Graph, op: Op) -> dict[str, float]:
    """Numeric features of one op in its graph: `fam_<family>` one-hot flags plus NUMERIC_KEYS."""
    ins = [t for t in graph.input_tensors(op) if t is not None]
    outs = graph.output_tensors(op)
    fam = _family(graph, op)
    in_elems = sum(_elems(t.shape) for t in ins)
    out_elems = sum(_elems(t.shape) for t in outs)
    feats: dict[str, float] = dict.fromkeys(NUMERIC_KEYS, 0.0)
    feats.update({f"fam_{f}": float(f == fam) for f in FAMILIES})
    feats.update(
        bytes_in=float(sum(t.nbytes for t in ins)),
        bytes_out=float(sum(t.nbytes for t in outs)),
        weight_bytes=float(sum(t.nbytes for t in ins if t.is_constant)),
        in_elems=float(in_elems),
        out_elems=float(out_elems),
        transcendental=float(op.op_type in _TRANSCENDENTAL),
        n_inputs=float(len(ins)),
        rank=float(len(outs[0].shape)) if outs else 0.0,
    )
    if fam in ("conv", "conv_dw"):
        feats.update(_conv_params(graph, op))
    elif fam == "gemm":
        feats.update(_gemm_params(graph, op))
    elif fam == "pool":
        feats.update(_pool_params(graph, op))
    elif fam == "attention":
        feats["flops"] = _attention_flops(ins)
    elif fam == "elementwise":
        feats["flops"] = float(out_elems) * (8.0 if feats["transcendental"] else 1.0)
        if len(ins) > 1 and outs:
            feats.update(_broadcast(ins, outs[0].shape))
    elif fam in _FLOPS_PER_ELEMENT:
        feats["flops"] = float(in_elems) * _FLOPS_PER_ELEMENT[fam]
    if op.op_type in _ROW_READS and len(ins) > 1:  # reads only the rows it gathers, not the whole table
        feats["bytes_in"] = feats["bytes_out"] + float(ins[1].nbytes)
    feats["aligned16"] = _aligned16(feats, outs, fam)
    moved = feats["bytes_in"] + feats["bytes_out"]
    feats["intensity"] = feats["flops"] / moved if moved else 0.0
    return {k: float(v) for k, v in feats.items()}


def family_of_features(features: dict[str, float]) -> str:
    """The family a feature dict was built for."""
    return next((f for f in FAMILIES if features.get(f"fam_{f}")), "elementwise")


def log_features(features: dict[str, float], keys: tuple[str, ...]) -> list[float]:
    """The features in `keys` order, magnitudes compressed with log1p (one-hot flags stay 0/1)."""
    return [math.log1p(max(0.0, features.get(k, 0.0))) for k in keys]
