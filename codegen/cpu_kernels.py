"""What onnxruntime makes of a graph on the CPU: which ir ops each of its kernels runs.

onnxruntime's optimizer fuses more than conv/gemm epilogues: GELU trees become one FastGelu or Gelu, MatMul and a
constant scale one FusedMatMul, decomposed LayerNorms one LayerNormalization; constant subgraphs fold away. A
cost model that priced every ir op of such a pattern as its own kernel (and its own per-op overhead) would see a
GPT-2 layer's 8-op GELU as 8 kernels where onnxruntime runs one. The map is read from onnxruntime itself: the
graph is optimized at the extended level (every fusion, no layout change, so tensor names stay the model's) and
each optimized node's output tensors name the ir ops it covers.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx

from codegen.onnx_graph import graph_model
from ragc.ir import Graph, Op


def cpu_kernels(graph: Graph) -> list[tuple[str, list[str]]]:
    """(onnxruntime node name, the ir ops it runs: first the one writing its output) per optimized node that runs
    any; ops in no kernel are optimized away (folded at load time or removed)."""
    optimized = _optimized_nodes(graph)
    producers = graph.producers()
    alive = {name for node in optimized for name in (*node.input, *node.output)} | set(graph.outputs)
    taken: set[str] = set()
    kernels = []
    for node in optimized:
        heads = [producers[name] for name in node.output if name in producers]
        members = list(dict.fromkeys(m.name for head in heads for m in _covered(head, producers, alive, taken)))
        taken.update(members)
        if members:
            kernels.append((node.name, members))
    return kernels


def named_op(ops: dict[str, Op], producers: dict[str, Op], node: str) -> Op | None:
    """The ir op an onnxruntime node name refers to: its own name, whole or before a fusion's suffix
    ("MatMul_3/MatMulAddFusion", "/h.0/attn/MatMul/MatMulScaleFusion/"), or the tensor it writes ("t7_0_nchwc")."""
    name = node.removeprefix("fused ").removesuffix("_nchwc")
    op = ops.get(name) or producers.get(name)
    while op is None and "/" in name.strip("/"):  # exporters' names hold "/" too: drop suffixes one by one
        name = name.rstrip("/").rsplit("/", 1)[0].removesuffix("_nchwc")
        op = ops.get(name) or producers.get(name)
    return op


def _covered(head: Op, producers: dict[str, Op], alive: set[str], taken: set[str]) -> list[Op]:
    """`head` and the ops upstream of it whose outputs onnxruntime no longer has (inside the same fused kernel)."""
    found: dict[str, Op] = {}
    stack = [head]
    while stack:
        op = stack.pop()
        if op.name in taken or op.name in found:
            continue
        found[op.name] = op
        stack += [producers[n] for n in op.inputs if n in producers and n not in alive]
    return list(found.values())


def _optimized_nodes(graph: Graph) -> list[onnx.NodeProto]:
    """The nodes of the graph after onnxruntime's extended optimizations (fusions, constant folding)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.log_severity_level = 3
    with tempfile.TemporaryDirectory(prefix="ragc-ort-") as tmp:
        opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        opts.add_session_config_entry("session.optimized_model_external_initializers_file_name", "weights.bin")
        opts.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
        ort.InferenceSession(graph_model(graph).SerializeToString(), opts, providers=["CPUExecutionProvider"])
        return list(onnx.load(opts.optimized_model_filepath, load_external_data=False).graph.node)
