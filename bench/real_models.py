"""The real exported models the measured-placement and transformer benchmarks use, exported on a machine with torch
(the lent H200): torchvision CNNs and ViT, and HF transformers with random weights (BERT-base by the
TorchScript-based exporter at opset 17; GPT-2 and a 4-layer Llama-style decoder by the dynamo exporter at opset 18),
batch 1, sequence 128. Each comes with its torch module and inputs, for torch CUDA eager timings in the same script.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SEQ = 128
VISION = ("resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0", "convnext_tiny", "vit_b_16")
TEXT = ("bert_base", "gpt2", "llama4")


@dataclass
class RealModel:
    name: str
    path: Path
    feeds: dict[str, np.ndarray]  # what the ONNX model takes
    module: Any  # the torch module (eval mode, on the CPU)
    args: tuple  # its torch inputs (CPU)


WARM_S = 1.0


def export(name: str, folder: Path) -> RealModel:
    """Export `name` into folder/<name>.onnx (reused when it exists) and return it with its torch twin."""
    import torch

    torch.manual_seed(0)
    module, args, names, opset, dynamo = _build(name)
    module.eval()
    path = folder / f"{name}.onnx"
    if not path.exists():
        torch.backends.mha.set_fastpath_enabled(False)  # torchvision's ViT takes a fused MHA path no exporter knows
        with torch.no_grad():
            torch.onnx.export(module, args, str(path), input_names=names, opset_version=opset, dynamo=dynamo)
        if dynamo:  # the dynamo exporter may write external data beside it: fold it in (the models are < 2 GB)
            import onnx

            onnx.save(onnx.load(str(path)), str(path))
    feeds = {n: a.numpy() for n, a in zip(names, args, strict=True)}
    return RealModel(name, path, feeds, module, args)


def _build(name: str) -> tuple[Any, tuple, list[str], int, bool]:
    import torch

    if name in VISION:
        import torchvision

        model = _no_zero_layers(getattr(torchvision.models, name)(weights=None))
        return model, (torch.randn(1, 3, 224, 224),), ["image"], 17, False
    import transformers

    ids = torch.randint(0, 1000, (1, SEQ))
    mask = torch.ones(1, SEQ, dtype=torch.int64)
    if name == "bert_base":
        config = transformers.BertConfig(attn_implementation="sdpa")
        model = transformers.BertModel(config)
        return _Plain(model), (ids, mask), ["input_ids", "attention_mask"], 17, False
    if name == "gpt2":
        model = transformers.GPT2Model(transformers.GPT2Config(attn_implementation="sdpa"))
        return _Plain(model), (ids, mask), ["input_ids", "attention_mask"], 18, True
    config = transformers.LlamaConfig(
        hidden_size=1024, intermediate_size=2816, num_hidden_layers=4, num_attention_heads=16, num_key_value_heads=4,
        vocab_size=32000, attn_implementation="sdpa",
    )  # fmt: skip
    return _Plain(transformers.LlamaModel(config)), (ids, mask), ["input_ids", "attention_mask"], 18, True


def _no_zero_layers(module: Any) -> Any:
    """Random init of Linear layers that start at zero (torchvision's ViT head), so the outputs compared with
    onnxruntime are not all zeros."""
    import torch

    for layer in module.modules():
        if isinstance(layer, torch.nn.Linear) and not layer.weight.any():
            torch.nn.init.normal_(layer.weight, std=0.02)
    return module


class _Plain:
    """A HF model as a module returning its last hidden state only (no cache), which both exporters take."""

    def __new__(cls, model: Any) -> Any:
        import torch

        class Plain(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: Any, attention_mask: Any) -> Any:
                return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state

        return Plain()


def torch_eager_ms(model: RealModel, runs: int = 30, half: bool = False) -> float:
    """Median ms of the torch module on CUDA in eager mode (fp32, or fp16 with `half`), synchronised per run, after
    WARM_S of warm-up runs (a few runs leave an idle GPU at low clocks: ViT-B/16 measured 3.5 to 6.4 ms so)."""
    import statistics
    import time

    import torch

    module = model.module.to("cuda")
    args = tuple(a.to("cuda") for a in model.args)
    if half:
        module = module.half()
        args = tuple(a.half() if a.is_floating_point() else a for a in args)
    times = []
    with torch.no_grad():
        warm_until, warmed = time.perf_counter() + WARM_S, 0  # clocks ramp up under load (bench/gpu_warmth.py)
        while time.perf_counter() < warm_until or warmed < 5:
            module(*args)
            warmed += 1
        for _ in range(runs):
            torch.cuda.synchronize()
            start = time.perf_counter()
            module(*args)
            torch.cuda.synchronize()
            times.append((time.perf_counter() - start) * 1e3)
    module.to("cpu").float()
    return statistics.median(times)
