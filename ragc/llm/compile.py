"""`ragc compile --llm`: one decoder, two phases, each placed by the solver on its own: the bundle folder is the decode
plan, `prefill/` inside it the prefill plan, and `llm.json` says how they share the fixed-capacity KV cache."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from ragc.bundle.write import check_target
from ragc.errors import ModelError
from ragc.llm.rewrite import (
    CACHE_POSITION,
    PAST,
    PRESENT,
    cache_layout,
    check_capacity,
    decode_model,
    prefill_model,
    without_cache_aliases,
)
from runtime_min.generate.loop import LLM_FILE, LLM_VERSION, PREFILL_DIR


@dataclass
class LlmResult:
    """What `compile_llm` made: the bundle folder and each phase's CompileResult."""

    bundle: Path
    prefill: Any
    decode: Any


def compile_llm(
    model: str | Path, out_dir: str | Path, max_context: int, prefill: int | None = None, **options: Any
) -> LlmResult:
    """Compile the decoder `model` for a cache of `max_context` positions: prefill of `prefill` tokens (default:
    max_context; shorter prompts are padded and masked) and decode of one; `options` as `ragc.compile`'s."""
    from ragc.pipeline import compile_model

    model, out_dir = Path(model), Path(out_dir)
    prefill = prefill or max_context
    check_capacity(max_context, prefill)
    proto = without_cache_aliases(_read(model))
    layout = cache_layout(proto)
    _clear_llm_parts(out_dir, model)
    check_target(out_dir, model)
    with tempfile.TemporaryDirectory(prefix="ragc-llm-") as tmp:
        phases = {"prefill": prefill_model(proto, layout, prefill), "decode": decode_model(proto, layout, max_context)}
        paths = {}
        for name, phase in phases.items():
            paths[name] = Path(tmp) / f"{model.stem}.{name}.onnx"
            onnx.save(phase, paths[name])
        decoded = compile_model(paths["decode"], out_dir, **options)
        prefilled = compile_model(paths["prefill"], out_dir / PREFILL_DIR, **options)
    info = {
        "version": LLM_VERSION,
        "max_context": max_context,
        "prefill_length": prefill,
        "cache_position": CACHE_POSITION,
        "position_ids": layout.has_positions,
        "cache": {past: past.replace(PAST, PRESENT, 1) for past in layout.concats},
    }
    (out_dir / LLM_FILE).write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    return LlmResult(out_dir, prefilled, decoded)


def _read(model: Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(model), load_external_data=True)
    except Exception as exc:  # any reason onnx gives: one line
        raise ModelError(
            f"cannot read {model}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from exc


def _clear_llm_parts(out_dir: Path, model: Path) -> None:
    """Recompiling over an LLM bundle: its llm.json and prefill/ go first (each checked to be ragc's)."""
    if not (out_dir / LLM_FILE).is_file() or not (out_dir / "manifest.json").is_file():
        return
    if (out_dir / PREFILL_DIR).exists():
        check_target(out_dir / PREFILL_DIR, model)
        shutil.rmtree(out_dir / PREFILL_DIR)
    (out_dir / LLM_FILE).unlink(missing_ok=True)
