"""QDQ int8 models compiled GPU-first: quantized here by onnxruntime's quantize_static, timed, matched to onnxruntime.

    python bench/qdq_int8.py                                  # tinynet and the light zoo's resnet50
    python bench/qdq_int8.py --models squeezenet,path/to/model.onnx --runs 50
    python bench/qdq_int8.py --models bert_base --runs 5        # a skeleton of bench/skeletons, filled first

Each model is quantized (QuantFormat.QDQ, int8 activations and weights, per-channel weights, four seeded random
calibration batches), compiled with `--devices gpu` and run under runtime_min; prints per model the ops on the GPU,
the median ms of ragc and of onnxruntime's CPU int8 run, and the largest difference from onnxruntime's int8 output
in quantization steps of the output (docs/precision.md: the stated tolerance is one), also against onnxruntime
with its graph optimisations off (the QDQ graph as written), and how far those two onnxruntime runs are apart.
Writes $OUT/qdq_int8.json when OUT is set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import runtime_min  # noqa: E402
from bench.measure import time_runs  # noqa: E402
from bench.models import LIGHT_DIR, ROOT  # noqa: E402
from ragc.pipeline import compile_model  # noqa: E402
from ragc.profiler.skeleton import filled, is_skeleton  # noqa: E402

DEFAULT_MODELS = ("tinynet", "resnet50")


class Calibration(CalibrationDataReader):
    """A few seeded random batches in [0, 1) of each float input."""

    def __init__(self, model: onnx.ModelProto, batches: int = 4) -> None:
        rng = np.random.default_rng(0)
        weights = {t.name for t in model.graph.initializer}
        shapes = {
            i.name: tuple(d.dim_value for d in i.type.tensor_type.shape.dim)
            for i in model.graph.input
            if i.name not in weights
        }
        dtypes = {i.name: i.type.tensor_type.elem_type for i in model.graph.input if i.name in shapes}
        self.batches = iter([feeds_for(shapes, dtypes, rng) for _ in range(batches)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)


def feeds_for(shapes: dict[str, tuple], dtypes: dict[str, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Seeded inputs: floats in [0, 1); integer inputs token ids in [0, 1000), an attention mask all ones."""
    out = {}
    for name, shape in shapes.items():
        if dtypes[name] == onnx.TensorProto.FLOAT:
            out[name] = rng.random(shape).astype(np.float32)
        else:
            kind = onnx.helper.tensor_dtype_to_np_dtype(dtypes[name])
            out[name] = np.ones(shape, kind) if "mask" in name else rng.integers(0, 1000, shape).astype(kind)
    return out


def quantize_qdq(src: Path, dst: Path, per_channel: bool = True) -> Path:
    """`src` quantized to int8 QDQ by onnxruntime (the format Ryzen AI users bring), written to `dst`; a model of
    IR version < 4 (the light zoo's) is first raised to 7, since the quantizer adds initializers that are no inputs."""
    model = onnx.load(src)
    if is_skeleton(model):
        filled(model)
    if model.ir_version < 4:
        model.ir_version = 7
    float_model = dst.with_suffix(".float.onnx")
    onnx.save(model, float_model)
    calibration = Calibration(model)
    quantize_static(str(float_model), str(dst), calibration, quant_format=QuantFormat.QDQ, per_channel=per_channel)
    return dst


def output_step(model: Path) -> float | None:
    """The scale of the DequantizeLinear writing the model's first output (one quantization step), or None where
    a float op writes it (BERT's last LayerNormalization)."""
    proto = onnx.load(model)
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    out = proto.graph.output[0].name
    dqs = [n for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == out]
    return float(inits[dqs[0].input[1]]) if dqs else None


def literal_session(model: Path) -> ort.InferenceSession:
    """onnxruntime with its graph optimisations off: QDQ run as written (dequantize, float op, quantize), the
    ONNX semantics, where the optimised session fuses integer kernels that round differently."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def _source(name: str) -> Path:
    if name == "tinynet":
        return ROOT / "examples" / "tinynet.onnx"
    light, skeleton = LIGHT_DIR / f"light_{name}.onnx", ROOT / "bench" / "skeletons" / f"{name}.onnx"
    return light if light.exists() else skeleton if skeleton.exists() else Path(name)


def measure(name: str, folder: Path, runs: int) -> dict[str, object]:
    """One model: quantize, compile GPU-first, time ragc and onnxruntime, compare the outputs."""
    model = quantize_qdq(_source(name), folder / f"{Path(name).stem}.qdq.onnx")
    result = compile_model(model, folder / f"{Path(name).stem}.plan", devices="gpu")
    ops = {d: sum(len(p.ops) for p in result.partitions if p.device == d) for d in ("gpu", "cpu")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", runtime_min.RuntimeMinWarning)
        plan = runtime_min.load(result.bundle)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    proto = onnx.load(model)
    dtypes = {i.name: i.type.tensor_type.elem_type for i in proto.graph.input}
    feeds = feeds_for({i.name: tuple(i.shape) for i in session.get_inputs()}, dtypes, np.random.default_rng(5))
    got = plan.run(feeds)[session.get_outputs()[0].name]
    step = output_step(model)
    measured = {}
    optimised, literal = session.run(None, feeds)[0], literal_session(model).run(None, feeds)[0]
    pairs = {"": (got, optimised), "_vs_literal_qdq": (got, literal), "_onnxruntime_spread": (optimised, literal)}
    for key, (ours, want) in pairs.items():  # the spread: onnxruntime's two ways of running it, one against other
        error = float(np.abs(ours - want).max())
        scale, figure = (step, "max_error_steps") if step else (float(np.abs(want).max()), "max_rel_error")
        measured[figure + key] = error / scale
    ragc_ms = time_runs(lambda: plan.run(feeds), runs, 3, 60.0).summary()["median_ms"]
    ort_ms = time_runs(lambda: session.run(None, feeds), runs, 3, 60.0).summary()["median_ms"]
    plan.close()
    return {"model": name, "ops": ops, "fallbacks": len(plan.fallbacks), **measured,
            "ragc_gpu_ms": ragc_ms, "onnxruntime_cpu_int8_ms": ort_ms}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            row = measure(name, Path(tmp), args.runs)
            rows.append(row)
            print(f"{name}: {row['ops']['gpu']} ops on the GPU, {row['ops']['cpu']} on the CPU; ragc "
                  f"{row['ragc_gpu_ms']:.3f} ms, onnxruntime CPU int8 {row['onnxruntime_cpu_int8_ms']:.3f} ms; "
                  f"max error {_error(row)}")  # fmt: skip
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "qdq_int8.json").write_text(json.dumps(rows, indent=1))


def _error(row: dict) -> str:
    if "max_error_steps" in row:
        return (f"{row['max_error_steps']:.2f} quantization steps ({row['max_error_steps_vs_literal_qdq']:.2f} "
                "against the QDQ graph run as written; onnxruntime's two runs differ by "
                f"{row['max_error_steps_onnxruntime_spread']:.2f})")  # fmt: skip
    return f"{row['max_rel_error']:.2e} of the output's largest magnitude"


if __name__ == "__main__":
    main()
