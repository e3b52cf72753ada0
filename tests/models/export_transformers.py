"""Export the small transformer test models in tests/models/ (CI never runs this; it needs torch + transformers).

Random weights (seed 0), hidden 64, 2 layers, sequence 16 at export time with batch and sequence dynamic: the
TorchScript-based exporter at opset 17 and the dynamo exporter at opset 18 and 23, for a BERT encoder, a GPT-2
decoder and a Llama-style decoder with grouped-query attention. Run: python tests/models/export_transformers.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import transformers

HERE = Path(__file__).resolve().parent
SEQ = 16
COMMON = {"vocab_size": 96, "max_position_embeddings": 64}


def _randomize(model: torch.nn.Module) -> torch.nn.Module:
    """Every parameter random (the default init leaves biases 0 and norm scales 1, which tests little)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(0.0, 0.15)
            if name.endswith("weight") and ("norm" in name or "ln_" in name):
                p.add_(1.0)
    return model


def _models() -> dict[str, torch.nn.Module]:
    bert = transformers.BertConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, **COMMON
    )
    gpt2 = transformers.GPT2Config(n_embd=64, n_layer=2, n_head=4, n_inner=128, n_positions=64, vocab_size=96)
    llama = transformers.LlamaConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        **COMMON,
    )
    models = {
        "bert": transformers.BertModel(bert, add_pooling_layer=False),
        "gpt2": transformers.GPT2Model(gpt2),
        "llama": transformers.LlamaModel(llama),
    }
    return {name: _randomize(model) for name, model in models.items()}


class _Wrapped(torch.nn.Module):
    """The model with (input_ids, attention_mask) in and the last hidden state out, no cache."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state


def export(name: str, model: torch.nn.Module, dynamo: bool, opset: int) -> Path:
    path = HERE / f"{name}_{'dynamo' if dynamo else 'ts'}_op{opset}.onnx"
    ids = torch.randint(0, COMMON["vocab_size"], (1, SEQ))
    mask = torch.ones(1, SEQ, dtype=torch.int64)
    args = (ids, mask)
    names = {"input_names": ["input_ids", "attention_mask"], "output_names": ["hidden"]}
    wrapped = _Wrapped(model).eval()
    with torch.no_grad():
        if dynamo:
            seq = torch.export.Dim("seq", min=2, max=64)
            shapes = {"input_ids": {1: seq}, "attention_mask": {1: seq}}
            program = torch.onnx.export(wrapped, args, dynamo=True, opset_version=opset, dynamic_shapes=shapes, **names)
            program.optimize()
            program.save(str(path))
        else:
            axes = {
                "input_ids": {0: "batch", 1: "seq"},
                "attention_mask": {0: "batch", 1: "seq"},
                "hidden": {0: "batch"},
            }
            torch.onnx.export(wrapped, args, str(path), dynamo=False, opset_version=opset, dynamic_axes=axes, **names)
    return path


def main() -> None:
    torch.manual_seed(0)
    wanted = set(sys.argv[1:])
    for name, model in _models().items():
        for dynamo, opset in ((False, 17), (True, 18), (True, 23)):
            if wanted and name not in wanted:
                continue
            try:
                print("wrote", export(name, model, dynamo, opset))
            except Exception as exc:  # report and go on: one exporter failing must not stop the others
                print(f"FAILED {name} dynamo={dynamo} opset={opset}: {str(exc).splitlines()[0]}")


if __name__ == "__main__":
    main()
