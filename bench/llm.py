"""Issue 22's closing table: decoders with a KV cache compiled by `ragc compile --llm` for this chip, 128-token prompt
+ 128 new tokens, batch 1: ragc's time to first token and decode tokens/s against HF transformers' `generate` (torch
CUDA eager fp32, its KV cache), and ragc's tokens against an onnxruntime loop over the same ONNX (its own Concat cache);
`decode_step_ms`: one decode step with the cache kept by the plan against fed and taken back by the caller.
On the lent H200 (GPT-2 small and a 4-layer Llama-style decoder, random weights):

    bash -c '. bench/device_env.sh && python3 -m ragc.cli profile --quick && python3 bench/llm.py --out $OUT'

(`--models gpt2` or `--models llama` runs one, where one command may take only 10 minutes.)

`--quick`: the tiny onnx.helper decoders (bench/llm_tiny.py), 16 + 16 tokens, no torch needed (lavapipe here).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.llm_tiny import TinyConfig, ort_generate, tiny_decoder  # noqa: E402


def hf_model(name: str):
    """A HF causal LM with random weights (sdpa attention for `generate`; the export switches to eager)."""
    import torch
    import transformers

    torch.manual_seed(0)
    if name == "gpt2":
        config = transformers.GPT2Config(attn_implementation="sdpa")
        return transformers.GPT2LMHeadModel(config).eval()
    config = transformers.LlamaConfig(
        hidden_size=1024, intermediate_size=2816, num_hidden_layers=4, num_attention_heads=16, num_key_value_heads=4,
        vocab_size=32000, max_position_embeddings=1024, attn_implementation="sdpa",
    )  # fmt: skip
    return transformers.LlamaForCausalLM(config).eval()


def export_with_cache(model, path: Path, exporters: tuple[bool, ...] = (False, True)) -> Path:
    """torch.onnx.export with past_key_values.{i}.key/value in and present.{i}.* out, symbolic batch/seq/past;
    `exporters` are the `dynamo` flags tried in order (the first that succeeds wins)."""
    import torch
    from transformers import DynamicCache

    layers, config = model.config.num_hidden_layers, model.config
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = config.hidden_size // config.num_attention_heads

    class WithCache(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, position_ids, *past):
            cache = DynamicCache()
            for i in range(layers):
                cache.update(past[2 * i], past[2 * i + 1], i)
            out = self.model(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                past_key_values=cache, use_cache=True,
            )  # fmt: skip
            return (out.logits, *[t for kv in _legacy(out.past_key_values) for t in kv])

    past_len, seq = 3, 2
    past = [torch.zeros(1, kv_heads, past_len, head_dim) for _ in range(2 * layers)]
    ids = torch.ones(1, seq, dtype=torch.long)
    args = (ids, torch.ones(1, past_len + seq, dtype=torch.long), torch.arange(past_len, past_len + seq)[None], *past)
    kv = [f"{p}.{i}.{k}" for i in range(layers) for k in ("key", "value") for p in ("past_key_values",)]
    present = [name.replace("past_key_values", "present") for name in kv]
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "total"},
            "position_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}}  # fmt: skip
    axes |= {name: {0: "batch", 2: "past"} for name in kv} | {name: {0: "batch", 2: "total"} for name in present}
    names = {"input_names": ["input_ids", "attention_mask", "position_ids", *kv], "output_names": ["logits", *present]}
    attention, config._attn_implementation = config._attn_implementation, "eager"  # masks from shapes, as exported
    try:
        for dynamo in exporters:  # by default the TorchScript exporter first; the dynamo one where it cannot trace
            try:
                with torch.no_grad():
                    shapes = {"dynamic_shapes": _dynamic_shapes(len(past))} if dynamo else {"dynamic_axes": axes}
                    opset = 18 if dynamo else 17  # dynamo at 17 writes opset 18's Split(num_outputs): invalid
                    torch.onnx.export(
                        WithCache().eval(), args, str(path), **names, **shapes, dynamo=dynamo, opset_version=opset
                    )
                break
            except Exception as exc:  # noqa: BLE001 - either exporter may refuse a transformers version
                print(f"torch.onnx.export (dynamo={dynamo}) failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                if dynamo == exporters[-1]:
                    raise
    finally:
        config._attn_implementation = attention
    return path


def _dynamic_shapes(pasts: int) -> tuple:
    """torch.export's form of the symbolic dims, per forward argument (the *past tuple nested), left to it to relate."""
    from torch.export import Dim

    tokens, cache = {0: Dim.DYNAMIC, 1: Dim.DYNAMIC}, {0: Dim.DYNAMIC, 2: Dim.DYNAMIC}
    return (tokens, tokens, tokens, tuple(cache for _ in range(pasts)))


def _legacy(cache) -> list[tuple]:
    """(key, value) per layer of a transformers cache, across the versions' layouts."""
    if hasattr(cache, "to_legacy_cache"):
        return list(cache.to_legacy_cache())
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(cache)


def hf_generate(model, prompt: np.ndarray, new: int) -> dict:
    """HF `generate` on torch CUDA eager fp32 with its KV cache: TTFT (one new token) and decode tokens/s."""
    import torch

    cuda = model.to("cuda")
    ids = torch.tensor(prompt[None], device="cuda")

    def timed(count: int) -> tuple[float, list[int]]:
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = cuda.generate(ids, max_new_tokens=count, min_new_tokens=count, do_sample=False, use_cache=True)
        torch.cuda.synchronize()
        return time.perf_counter() - start, out[0, len(prompt) :].tolist()

    timed(new)  # warm-up
    first = min(timed(1)[0] for _ in range(3))
    total, tokens = timed(new)
    return {"ttft_ms": first * 1e3, "decode_tokens_per_s": (new - 1) / (total - first), "tokens": tokens}


def decode_step_ms(plan_path: Path, steps: int, way: str) -> float:
    """Median ms of one decode step over `steps` positions of a zero-started cache: "kept" as `generate` runs it
    (Plan.keep_state: the cache stays where the plan updates it), "fed" as a caller feeding the whole cache and
    taking the updated one back each step (what `generate` did before the cache was kept, 2026-12-02)."""
    import runtime_min
    from runtime_min.generate.loop import read_llm_json

    info = read_llm_json(plan_path)
    with runtime_min.load(plan_path) as plan:
        specs = {s.name: s for s in plan.inputs}
        cache = {past: np.zeros(specs[past].shape, specs[past].dtype) for past in info["cache"]}
        if way == "kept":
            plan.keep_state(info["cache"])
        mask, times = np.zeros((1, info["max_context"]), np.int64), []
        for position in range(min(steps, info["max_context"])):
            mask[0, position] = 1
            feeds = {"input_ids": np.array([[position % 7]]), "attention_mask": mask}
            feeds[info["cache_position"]] = np.array([position])
            if info["position_ids"]:
                feeds["position_ids"] = np.array([[position]])
            start = time.perf_counter()
            if way == "kept":
                plan.run(feeds, outputs=["logits"])
            else:
                out = plan.run(feeds | cache)
                cache = {past: out[present] for past, present in info["cache"].items()}
            times.append(time.perf_counter() - start)
    return float(np.median(times[2:]) * 1e3)


def measure(name: str, model_path: Path, folder: Path, prompt: np.ndarray, new: int, devices: str, hf) -> dict:
    import runtime_min
    from ragc.cli.llm import llm_summary, timed_generate
    from ragc.llm.compile import compile_llm

    start = time.perf_counter()
    compile_llm(model_path, folder / f"{name}-plan", len(prompt) + new, len(prompt), devices=devices)
    row = {"model": name, "compile_s": time.perf_counter() - start, "plan": llm_summary(folder / f"{name}-plan")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with runtime_min.load(folder / f"{name}-plan") as plan:
            row["ragc"] = timed_generate(plan, prompt, new) | {"fallbacks": dict(plan.fallbacks)}
        row["decode_step_ms"] = {way: decode_step_ms(folder / f"{name}-plan", new, way) for way in ("fed", "kept")}
    start = time.perf_counter()
    ref_tokens, ref_logits = ort_generate(str(model_path), prompt, new)
    row["onnxruntime_loop_s"] = time.perf_counter() - start
    same = [a == b for a, b in zip(row["ragc"]["tokens"], ref_tokens, strict=True)]
    margins = [float(np.diff(np.sort(step)[-2:])[0]) for step in ref_logits]
    row["tokens_identical_to_onnxruntime"] = all(same)
    row["first_difference"] = None if all(same) else same.index(False)
    row["min_reference_margin"] = min(margins)
    if hf is not None:
        row["hf"] = hf_generate(hf, prompt, new)
        row["decode_vs_hf"] = row["ragc"]["decode_tokens_per_s"] / row["hf"]["decode_tokens_per_s"]
        row["ttft_vs_hf"] = row["ragc"]["ttft_ms"] / row["hf"]["ttft_ms"]
        row["hf_tokens_identical"] = row["hf"]["tokens"] == ref_tokens
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny onnx.helper decoders, no torch (lavapipe)")
    parser.add_argument("--devices", default="gpu", help="processors the plans may use [gpu]")
    parser.add_argument("--models", default="gpt2,llama", help="comma list of gpt2, llama [both]")
    parser.add_argument("--out", type=Path, default=Path("/tmp/ragc-llm"), help="folder for models, plans, llm.json")
    parser.add_argument(
        "--export-skeletons",
        type=Path,
        metavar="DIR",
        help="only export each model with each torch exporter and write their skeletons to DIR (bench/skeletons/llm)",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.export_skeletons:
        return export_skeletons(args.models.split(","), args.out, args.export_skeletons)
    prompt_len, new = (16, 16) if args.quick else (128, 128)
    prompt = np.random.default_rng(0).integers(0, 64 if args.quick else 32000, prompt_len)
    rows = []
    for name in args.models.split(","):
        path, hf = args.out / f"{name}.onnx", None
        if args.quick:
            config = TinyConfig(style=name, kv_heads=2 if name == "llama" else 4, max_positions=64)
            path.write_bytes(tiny_decoder(config).SerializeToString())
        else:
            hf = hf_model(name)
            export_with_cache(hf, path)
        rows.append(measure(name, path, args.out, prompt, new, args.devices, hf))
        print(json.dumps({k: v for k, v in rows[-1].items() if k not in ("ragc", "hf")} | _brief(rows[-1])))
    (args.out / "llm.json").write_text(json.dumps(rows, indent=1) + "\n")


def export_skeletons(names: list[str], work: Path, folder: Path) -> None:
    """Each HF decoder exported by both torch exporters, stripped to a skeleton (ragc.profiler.skeleton)."""
    from ragc.profiler.skeleton import strip

    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        model = hf_model(name)
        for dynamo, exporter in ((False, "torchscript"), (True, "dynamo")):
            path = work / f"{name}-{exporter}.onnx"
            try:
                export_with_cache(model, path, (dynamo,))
            except Exception as exc:  # noqa: BLE001 - recorded, the other exporter still runs
                print(f"{name} {exporter}: {type(exc).__name__}: {exc}")
                continue
            strip(path, folder / path.name)
            print(f"{name} {exporter}: {folder / path.name}")


def _brief(row: dict) -> dict:
    keep = ("ttft_ms", "decode_tokens_per_s")
    return {side: {k: row[side][k] for k in keep} for side in ("ragc", "hf") if side in row}


if __name__ == "__main__":
    main()
