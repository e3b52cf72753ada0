"""`ragc compile --llm`: one decoder, two phases, each placed by the solver on its own, written as one bundle: the
decode plan is its schedule.json, the prefill plan schedule.prefill.json, both reading one tensor store (every
weight stored once), and llm.json says how they share the fixed-capacity KV cache."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from ragc.bundle.merge import merge_plans
from ragc.bundle.write import check_target, write_bundle
from ragc.compilation import Compilation
from ragc.errors import ModelError
from ragc.llm.rewrite import (
    CACHE_POSITION,
    LAST_POSITION,
    PAST,
    PRESENT,
    cache_layout,
    check_capacity,
    decode_model,
    prefill_model,
    without_cache_aliases,
)
from ragc.pipeline import compile_options, compile_unwritten
from runtime_min.format import SCHEDULE, dumps
from runtime_min.generate.loop import LLM_FILE, LLM_VERSION

PHASE_FIGURES = ("predicted_ms", "baselines_ms")
PREFILL_DIR = "prefill"  # LLM bundle version 1 kept its prefill plan here, a second bundle


@dataclass
class LlmResult:
    """What `compile_llm` made: the bundle folder and each phase's Compilation."""

    bundle: Path
    prefill: Compilation
    decode: Compilation


def compile_llm(
    model: str | Path, out_dir: str | Path, max_context: int, prefill: int | None = None, **options: Any
) -> LlmResult:
    """Compile the decoder `model` for a cache of `max_context` positions: prefill of `prefill` tokens (default:
    max_context; shorter prompts are padded and masked) and decode of one; `options` as `ragc.compile`'s."""
    model, out_dir = Path(model), Path(out_dir)
    prefill = prefill or max_context
    check_capacity(max_context, prefill)
    proto = without_cache_aliases(_read(model))
    layout = cache_layout(proto)
    _clear_llm_parts(out_dir, model)
    check_target(out_dir, model)
    opts = compile_options(options)
    with tempfile.TemporaryDirectory(prefix="ragc-llm-") as tmp:
        phases = {"decode": decode_model(proto, layout, max_context), "prefill": prefill_model(proto, layout, prefill)}
        done: dict[str, Compilation] = {}
        for name, phase in phases.items():
            path = Path(tmp) / f"{model.stem}.{name}.onnx"
            onnx.save(phase, path)
            store = done["decode"].store if done else None  # the prefill's weights: the decode plan's, once
            done[name] = compile_unwritten(Compilation(path, out_dir, opts, store=store))
    files, schedules = merge_plans(done)
    files.pop(SCHEDULE)  # the writer adds it, from the decode plan's schedule
    info = {
        "version": LLM_VERSION,
        "max_context": max_context,
        "prefill_length": prefill,
        "prefill_schedule": schedules["prefill"],
        "cache_position": CACHE_POSITION,
        "last_position": LAST_POSITION,
        "position_ids": layout.has_positions,
        "cache": {past: past.replace(PAST, PRESENT, 1) for past in layout.concats},
        "prefill": {k: done["prefill"].info[k] for k in PHASE_FIGURES},  # the manifest's figures are decode's
    }
    files[LLM_FILE] = dumps(info)
    decode = done["decode"]
    bundle = write_bundle(out_dir, decode.schedule, files, decode.info, model)
    return LlmResult(bundle, done["prefill"], decode)


def _read(model: Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(model), load_external_data=True)
    except Exception as exc:  # any reason onnx gives: one line
        raise ModelError(
            f"cannot read {model}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from exc


def _clear_llm_parts(out_dir: Path, model: Path) -> None:
    """Recompiling over an LLM bundle of version 1 (its prefill plan in prefill/, llm.json not in the manifest):
    those two go first, prefill/ checked to be ragc's."""
    if not (out_dir / PREFILL_DIR).is_dir() or not (out_dir / "manifest.json").is_file():
        return
    check_target(out_dir / PREFILL_DIR, model)
    shutil.rmtree(out_dir / PREFILL_DIR)
    (out_dir / LLM_FILE).unlink(missing_ok=True)
