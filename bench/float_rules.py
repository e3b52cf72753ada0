"""The floating-point rules of a Vulkan device as ragc's kernels see them: its float-controls properties, whether
denormals survive arithmetic and copies, and NaN and -0.0 through Relu (which must match onnxruntime).

    bash -c '. bench/device_env.sh && python3 bench/float_rules.py'   # on the lent H200: fills KERNELS.md's table
    python bench/float_rules.py                                        # here (lavapipe)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from codegen.gpu import emit  # noqa: E402
from ragc.bundle.single import single_partition  # noqa: E402
from ragc.ir import Graph, Op, Tensor  # noqa: E402
from runtime_min.backends.vulkan import VulkanBackend  # noqa: E402
from runtime_min.options import LoadOptions  # noqa: E402

TINY = np.array([1e-40, -1e-40, 1.4e-45, -1.17e-38, 5e-39, 1e-39, -3e-42, 2e-45], np.float32)
SPECIAL = np.array([np.nan, 1.0, -np.inf, np.inf, -0.0, 2.0, np.nan, -1.0], np.float32)


def run(backend: VulkanBackend, ops: list[tuple[str, list[str], dict]], feeds: dict[str, np.ndarray]) -> list:
    """Each (op type, inputs, attrs) on (8,) float32 tensors, as one GPU program; the outputs in order."""
    tensors = {n: Tensor(n, (8,), "float32") for n in feeds}
    graph_ops, outs = [], []
    for i, (op_type, inputs, attrs) in enumerate(ops):
        out = f"y{i}"
        tensors[out] = Tensor(out, (8,), "float32")
        graph_ops.append(Op(f"op{i}", op_type, inputs, [out], attrs))
        outs.append(out)
    graph = Graph(graph_ops, tensors, list(feeds), outs, opset=20)
    artifact = emit(graph, "rules")
    with tempfile.TemporaryDirectory() as tmp:
        exe = backend.prepare(*single_partition(artifact, graph, Path(tmp), "gpu"))
    got = exe.run(feeds)
    exe.close()
    return [np.array(got[o]) for o in outs]


def main() -> None:
    backend = VulkanBackend(LoadOptions())
    print(backend.describe())
    for key, value in sorted(backend.dev.float_controls.items()):
        print(f"  {key}: {value}")
    add, mul, relu, copy = run(
        backend,
        [
            ("Add", ["x", "zero"], {}),
            ("Mul", ["x", "one"], {}),
            ("Relu", ["x"], {}),
            ("Transpose", ["x"], {"perm": [0]}),
        ],
        {"x": TINY, "zero": np.zeros(8, np.float32), "one": np.ones(8, np.float32)},
    )
    for name, got in (("x + 0", add), ("x * 1", mul), ("Relu", relu), ("copy", copy)):
        kept = np.array_equal(
            got.view(np.uint32), np.maximum(TINY, 0).view(np.uint32) if name == "Relu" else TINY.view(np.uint32)
        )
        print(f"denormals through {name:6s}: {'kept' if kept else 'FLUSHED'} {got.tolist()}")
    (relu,) = run(backend, [("Relu", ["x"], {})], {"x": SPECIAL})
    print(f"Relu of {SPECIAL.tolist()}: {relu.tolist()} (onnxruntime: NaN stays NaN, -0.0 stays -0.0)")
    backend.close()


if __name__ == "__main__":
    main()
