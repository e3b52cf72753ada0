"""The LLM parts of `ragc compile --llm`, `ragc simulate` and `ragc run --generate`: each phase's split, predicted
time to first token and tokens/s, and measured generation."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from ragc.errors import UsageError

# AMD's published hybrid figures (issue 22): another, larger model on the real chip; quoted, never simulated
PUBLISHED_HX370 = (
    "published by AMD for the HX 370 (a larger model, measured, not comparable one to one): hybrid NPU prefill + "
    "iGPU decode, first token of an 18K-token prompt 4.5 s (llama.cpp Vulkan 66 s), decode 9.7 tokens/s (llama.cpp "
    "Vulkan 16.0)"
)


def llm_summary(plan: Path) -> dict[str, Any] | None:
    """Each phase's processors and predicted times, from the bundle alone; None for a plan that is not an LLM's."""
    from runtime_min.generate.loop import LLM_FILE, prefill_schedule, read_llm_json
    from runtime_min.manifest import read_bundle

    if not (plan / LLM_FILE).is_file():
        return None
    decode = read_bundle(plan, False)
    info = read_llm_json(plan)
    phases = {"prefill": read_bundle(plan, False, prefill_schedule(info, decode.manifest)), "decode": decode}
    out: dict[str, Any] = {"max_context": info.get("max_context"), "prefill_length": info.get("prefill_length")}
    prefill = info.get("prefill") if isinstance(info.get("prefill"), dict) else {}
    figures = {"prefill": prefill, "decode": decode.manifest}  # one manifest: decode's figures
    for name, bundle in phases.items():
        out[name] = {
            "predicted_ms": figures[name].get("predicted_ms"),
            "devices": sorted({p.device for p in bundle.partitions}),
            "baselines_ms": figures[name].get("baselines_ms", {}),
        }
    decode_ms = out["decode"]["predicted_ms"] or 0.0
    out["ttft_ms"], out["tokens_per_s"] = out["prefill"]["predicted_ms"], 1000.0 / decode_ms if decode_ms else None
    out["chip_id"] = phases["decode"].manifest.get("chip_id", "")
    return out


def llm_lines(summary: dict[str, Any]) -> list[str]:
    """The summary as lines: each phase's split, the predictions labelled, AMD's figures beside them on the HX 370."""
    kind = "simulated" if summary["chip_id"].startswith("target-") else "predicted"
    pre, dec = summary["prefill"], summary["decode"]
    lines = [
        f"prefill ({summary['prefill_length']} tokens) on {'+'.join(pre['devices'])}: time to first token "
        f"{pre['predicted_ms']:.3f} ms ({kind}); alone: {_alone(pre['baselines_ms'])}",
        f"decode (cache of {summary['max_context']}) on {'+'.join(dec['devices'])}: {dec['predicted_ms']:.3f} ms per "
        f"token, {summary['tokens_per_s']:.1f} tokens/s ({kind}); alone: {_alone(dec['baselines_ms'])}",
    ]
    if "ryzen-ai-9-hx-370" in summary["chip_id"]:
        lines.append(PUBLISHED_HX370)
    return lines


def _alone(baselines: dict[str, float]) -> str:
    return ", ".join(f"{device} {ms:.3f} ms" for device, ms in sorted(baselines.items())) or "-"


def run_generate(plan: Path, count: int, prompt_file: Path | None, options: dict[str, Any]) -> dict[str, Any]:
    """Generate `count` tokens after the prompt in `prompt_file` (.npy or whitespace-separated ids); time it."""
    import runtime_min

    if prompt_file is None:
        raise UsageError("--generate N needs --prompt-ids FILE (token ids: a .npy array or whitespace-separated text)")
    with runtime_min.load(plan, **options) as loaded:
        return timed_generate(loaded, _read_prompt(prompt_file), count)


def timed_generate(loaded: Any, prompt: Any, count: int) -> dict[str, Any]:
    """Time to first token (prefill and its sampling) and decode tokens/s of one generation, after a warm-up."""
    list(loaded.generate(prompt, 2))  # warm-up: both plans' first runs
    tokens, stamps = [], []
    start = time.perf_counter()
    for token in loaded.generate(prompt, count):
        stamps.append(time.perf_counter())
        tokens.append(token)
    tokens_s = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else None
    return {"ttft_ms": (stamps[0] - start) * 1e3, "decode_tokens_per_s": tokens_s, "tokens": tokens}


def generate_lines(data: dict[str, Any]) -> list[str]:
    rate = data["decode_tokens_per_s"]
    return [
        "tokens: " + " ".join(map(str, data["tokens"])),
        f"time to first token {data['ttft_ms']:.2f} ms, decode {rate:.1f} tokens/s (measured here)"
        if rate
        else f"time to first token {data['ttft_ms']:.2f} ms (measured here)",
    ]


def _read_prompt(path: Path) -> np.ndarray:
    try:
        ids = np.load(path, allow_pickle=False) if path.suffix == ".npy" else np.array(path.read_text().split(), int)
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"--prompt-ids {path}: cannot read token ids ({type(exc).__name__}); give a .npy or text file"
        ) from None
    return ids


def echo_lines(lines: list[str]) -> None:
    for line in lines:
        click.echo(line)
