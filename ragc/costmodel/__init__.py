"""The cost model: predicted ms of an op on a device, learned from a chip personality (roofline where unmeasured)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

from ragc.costmodel.cpu_fusion import cpu_kernel_features, cpu_kernel_of
from ragc.costmodel.features import family_of_features, op_features
from ragc.costmodel.gpu_features import gpu_tile_features
from ragc.costmodel.gpu_fusion import gpu_kernel_features, gpu_kernel_of
from ragc.costmodel.learned import MIN_SAMPLES, DeviceModel
from ragc.costmodel.npu import XdnaTiming
from ragc.costmodel.npu_ops import npu_absorbed, npu_op_ms
from ragc.costmodel.precision import precision_factor
from ragc.costmodel.roofline import roofline_ms
from ragc.ir import Graph, Op
from ragc.personality.store import Personality

if TYPE_CHECKING:
    from codegen.gpu.precision import Precision

CostFn = Callable[[Graph, Op, str], float]
DEVICE_FEATURES = {"gpu": gpu_tile_features}  # a device's own features of an op (see learned.design_row)


class CostModel:
    """One predictor per device of a personality: learned where it has samples, roofline otherwise; GPU kernels
    priced in `gpu_precision` (fp32 when None; ragc.costmodel.precision)."""

    def __init__(
        self,
        personality: Personality,
        extra_samples: dict[str, list[dict]] | None = None,
        gpu_precision: Precision | None = None,
    ):
        self.personality = personality
        self.gpu_precision = gpu_precision
        self.models: dict[str, DeviceModel | None] = {}
        self.npu = XdnaTiming.from_params(personality.data["npu"]) if "npu" in personality.data else None
        for device in personality.devices:
            if device == "npu" and self.npu is not None:
                continue  # the XDNA model prices the NPU (ragc.costmodel.npu_ops)
            samples = personality.samples(device) + (extra_samples or {}).get(device, [])
            spec = personality.device(device)
            if len(samples) >= MIN_SAMPLES:
                self.models[device] = DeviceModel(samples, spec, DEVICE_FEATURES.get(device))
            else:
                self.models[device] = None
                if not personality.is_target:
                    warnings.warn(
                        f"ragc: {device} of {personality.chip_id} has {len(samples)} measured samples; "
                        "using the roofline from its peak rates (run `ragc profile` to measure it)",
                        stacklevel=2,
                    )

    def predict(self, device: str, features: list[dict[str, float]]) -> list[float]:
        """Kernel ms of each op on `device` (per-op and launch overheads excluded)."""
        model = self.models.get(device)
        if model is None:
            spec = self.personality.device(device)
            return [roofline_ms(f, spec) for f in features]
        return model.predict(features)

    def graph_ms(self, graph: Graph, device: str) -> dict[str, float]:
        """Ms of every op of the graph on `device` inside a partition (Personality.op_ms of its kernel); epilogues
        and fused elementwise ops (inside another op's kernel) and metadata ops cost nothing. The NPU of a
        personality with an `npu` section is priced by the XDNA model."""
        if device == "npu" and self.npu is not None:
            return npu_op_ms(graph, self.npu)
        feats = kernel_features(graph, device)
        live = [name for name, f in feats.items() if family_of_features(f) != "metadata"]
        kernels = self.predict(device, [feats[name] for name in live])
        if device == "gpu" and self.gpu_precision is not None:
            spec = self.personality.device(device)
            factors = [precision_factor(feats[name], spec, self.gpu_precision) for name in live]
            kernels = [k * f for k, f in zip(kernels, factors, strict=True)]
        times = {name: self.personality.op_ms(device, k) for name, k in zip(live, kernels, strict=True)}
        return {op.name: times.get(op.name, 0.0) for op in graph.ops}


def kernel_features(graph: Graph, device: str) -> dict[str, dict[str, float]]:
    """Op name -> the features of the kernel it names on `device`, a fused kernel as a whole (onnxruntime's on the
    CPU, ragc's on the GPU: kernel_merge); ops inside another op's kernel (absorbed_ops) have none."""
    if device == "cpu":
        return cpu_kernel_features(graph)
    if device == "gpu":
        return gpu_kernel_features(graph)
    fused = absorbed_ops(graph, device)
    return {op.name: op_features(graph, op) for op in graph.ops if op.name not in fused}


def partition_op_stats(graph: Graph, op_names: list[str], kernels: dict[str, dict[str, float]]) -> list[dict]:
    """[{"name", "op_type", "features", "fused"}] for the named ops of a partition, in graph order (JSON-ready), from
    kernel_features of its device: the ops inside another's kernel are "fused" (recorded runs give them no sample)."""
    chosen = set(op_names)
    return [
        {
            "name": op.name,
            "op_type": op.op_type,
            "features": kernels.get(op.name) or op_features(graph, op),
            "fused": op.name not in kernels,
        }
        for op in graph.ops
        if op.name in chosen
    ]


def absorbed_ops(graph: Graph, device: str) -> set[str]:
    """Ops that run inside another op's kernel on `device` and so cost nothing of their own: ragc's GPU codegen
    fuses attention, RMSNorm and rotary patterns (codegen.gpu.patterns; the fused kernel keeps one member's name),
    elementwise trees and conv/gemm epilogues, the NPU elementwise chains into GEMM epilogues (codegen.npu.fuse);
    onnxruntime fuses what its optimizer finds (codegen.cpu_kernels: epilogues, GELU, scaled MatMul, ...) and folds
    constant subgraphs."""
    if device == "npu":
        return npu_absorbed(graph)
    kernel_of = gpu_kernel_of(graph) if device == "gpu" else cpu_kernel_of(graph)
    return {name for name, kernel in kernel_of.items() if kernel != name}


def cost_fn(personality: Personality, gpu_precision: Precision | None = None) -> CostFn:
    """(graph, op, device) -> predicted ms of that op on that device (GPU kernels in `gpu_precision`); whole graphs
    are predicted in one batch per device and cached until a different graph object is asked about."""
    model = CostModel(personality, gpu_precision=gpu_precision)
    cache: dict[str, dict[str, float]] = {}
    seen: list[Graph] = []

    def cost(graph: Graph, op: Op, device: str) -> float:
        if not seen or seen[0] is not graph:
            seen[:] = [graph]
            cache.clear()
        if device not in cache:
            cache[device] = model.graph_ms(graph, device)
        return cache[device][op.name]

    return cost
