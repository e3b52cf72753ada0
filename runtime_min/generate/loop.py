"""The generation loop: one padded prefill, then one decode step per token, each writing its key/value row into the
fixed-capacity cache (the decode plan's ScatterND) and attending over the rows its attention mask marks valid. The
decode plan keeps the cache (`Plan.keep_state`): fed once per prompt, then updated where it lives."""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime_min.errors import BundleError, InputError
from runtime_min.format import need_file
from runtime_min.generate.sampling import Sampler
from runtime_min.manifest import read_bundle

LLM_FILE, LLM_VERSION = "llm.json", 3  # 2: one bundle, one tensor store; 3: prefill's logits of the last row only
READ_VERSIONS = (2, 3)
_sessions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # decode plan -> its LlmSession


@dataclass
class LlmSession:
    """What llm.json says, checked against both plans, and the prefill plan loaded beside the decode plan."""

    capacity: int
    prefill_length: int
    cache_position: str
    positions: bool
    cache: dict[str, str]  # decode input (the cache) -> the output that holds it updated
    prefill: Any  # runtime_min.Plan
    last_position: str | None  # version 3: the prefill input naming the one row of logits it computes


def generate(
    plan: Any,
    input_ids: Any,
    max_new_tokens: int,
    *,
    temperature: float = 0.0,
    top_k: int | None = None,
    seed: int = 0,
    stop: Iterable[int] | None = None,
) -> Iterator[int]:
    """Tokens of an LLM bundle following `input_ids` (a prompt of token ids), at most `max_new_tokens`, ending
    after a token in `stop`. Greedy (temperature 0) is deterministic; sampling is seeded by `seed`."""
    return tokens(plan, input_ids, max_new_tokens, Sampler(temperature, top_k, seed), stop)


def tokens(
    plan: Any, input_ids: Any, max_new_tokens: int, pick: Callable[[np.ndarray], int], stop: Iterable[int] | None = None
) -> Iterator[int]:
    """As `generate`, with `pick` choosing each token from its logits (a test feeds a reference's tokens)."""
    session = _session(plan)
    prompt = _prompt(input_ids, plan)
    if prompt.size > session.prefill_length or prompt.size + max_new_tokens - 1 > session.capacity:
        raise InputError(
            f"a prompt of {prompt.size} tokens plus {max_new_tokens} new ones does not fit this plan (prefill "
            f"{session.prefill_length}, cache {session.capacity}); recompile with a larger --max-context"
        )
    return _tokens(plan, session, prompt, max_new_tokens, pick, frozenset(stop or ()))


def _tokens(
    plan: Any, s: LlmSession, prompt: np.ndarray, count: int, choose: Callable[[np.ndarray], int], stops: frozenset
) -> Iterator[int]:
    n, length = prompt.size, s.prefill_length
    feeds = {"input_ids": np.zeros((1, length), np.int64), "attention_mask": np.zeros((1, length), np.int64)}
    feeds["input_ids"][0, :n], feeds["attention_mask"][0, :n] = prompt, 1
    if s.positions:
        feeds["position_ids"] = np.arange(length, dtype=np.int64).reshape(1, -1)
    if s.last_position:
        feeds[s.last_position] = np.array([n - 1])
    out = s.prefill.run(feeds, outputs=["logits", *s.cache.values()])
    cache = {}
    for past, present in s.cache.items():  # once per prompt: the prefill's rows into the fixed-capacity cache
        rows = out[present]
        cache[past] = np.zeros((*rows.shape[:2], s.capacity, rows.shape[3]), rows.dtype)
        cache[past][:, :, :length] = rows  # fed with the first decode step, kept by the plan from then on
    token, mask = choose(out["logits"][0, 0 if s.last_position else n - 1]), np.zeros((1, s.capacity), np.int64)
    mask[0, :n] = 1
    for position in range(n, n + count):
        yield token
        if token in stops or position == n + count - 1:
            return
        mask[0, position] = 1
        feeds = {
            "input_ids": np.array([[token]], np.int64),
            "attention_mask": mask,
            s.cache_position: np.array([position]),
        }
        if s.positions:
            feeds["position_ids"] = np.array([[position]], np.int64)
        out = plan.run(feeds | cache, outputs=["logits"])
        cache = {}
        token = choose(out["logits"][0, -1])


def _prompt(input_ids: Any, plan: Any) -> np.ndarray:
    prompt = np.asarray(input_ids)
    vocab = next(s.shape[-1] for s in plan.outputs if s.name == "logits")
    if prompt.dtype.kind not in "iu" or prompt.size == 0 or prompt.ndim > 2 or (prompt.ndim == 2 and len(prompt) != 1):
        raise InputError("input_ids must be a non-empty list (or [1, n] array) of integer token ids; batch 1 only")
    if prompt.min() < 0 or prompt.max() >= vocab:
        raise InputError(f"input_ids hold a token outside the vocabulary of {vocab}; use ids 0..{vocab - 1}")
    return prompt.reshape(-1).astype(np.int64)


def _session(plan: Any) -> LlmSession:
    if plan in _sessions:
        return _sessions[plan]
    path = plan.path / LLM_FILE
    if not path.is_file():
        raise InputError(
            f"{plan.path} is not an LLM plan (no {LLM_FILE}); compile the decoder with `ragc compile --llm`"
        )
    if LLM_FILE not in plan.manifest.get("files", {}):
        raise BundleError(
            f"{LLM_FILE} is not in the manifest (an LLM bundle of version 1, or tampered with); recompile with "
            "`ragc compile --llm`"
        )
    session = _checked(read_llm_json(plan.path), plan)
    plan.keep_state(session.cache)
    _sessions[plan] = session
    return session


def read_llm_json(root: Path) -> Any:
    """The parsed llm.json of the bundle at `root` (untrusted: the caller checks its fields)."""
    try:
        return json.loads((root / LLM_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(
            f"{LLM_FILE} cannot be read ({type(exc).__name__}); recompile with `ragc compile --llm`"
        ) from None


def prefill_schedule(doc: Any, manifest: dict[str, Any]) -> str:
    """The prefill plan's schedule file that llm.json names, checked to be a bundle file the manifest lists."""
    schedule = doc.get("prefill_schedule") if isinstance(doc, dict) and doc.get("version") in READ_VERSIONS else None
    if not isinstance(schedule, str) or schedule not in manifest.get("files", {}):
        raise BundleError(f"{LLM_FILE} names no prefill schedule of this bundle; recompile with `ragc compile --llm`")
    return need_file(schedule, LLM_FILE)


def _checked(doc: Any, plan: Any) -> LlmSession:
    """llm.json is untrusted input: every field checked against the two plans it names."""
    ok = isinstance(doc, dict) and doc.get("version") in READ_VERSIONS
    capacity, length, cache = (doc.get(k) if ok else None for k in ("max_context", "prefill_length", "cache"))
    ok = ok and all(type(v) is int for v in (capacity, length)) and 1 <= length <= capacity
    ok = ok and isinstance(cache, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in cache.items())
    ok = ok and isinstance(doc.get("cache_position"), str) and isinstance(doc.get("position_ids"), bool)
    last = doc.get("last_position") if ok and doc["version"] >= 3 else None
    ok = ok and (isinstance(last, str) or doc["version"] < 3)
    if not ok:
        raise BundleError(f"{LLM_FILE} is malformed or of another version; recompile with `ragc compile --llm`")
    prefill = type(plan)(read_bundle(plan.path, False, prefill_schedule(doc, plan.manifest)), plan.options)
    extra = ["position_ids"] if doc["position_ids"] else []
    want = {
        "decode inputs": (
            {s.name for s in plan.inputs},
            {"input_ids", "attention_mask", doc["cache_position"], *cache, *extra},
        ),
        "decode outputs": ({s.name for s in plan.outputs}, {"logits", *cache.values()}),
        "prefill inputs": (
            {s.name for s in prefill.inputs},
            {"input_ids", "attention_mask", *extra, *[last][: bool(last)]},
        ),
        "prefill outputs": ({s.name for s in prefill.outputs}, {"logits", *cache.values()}),
    }
    for what, (have, need) in want.items():
        if have != need:
            prefill.close()
            raise BundleError(f"{LLM_FILE} does not match the plan's {what}; recompile with `ragc compile --llm`")
    return LlmSession(capacity, length, doc["cache_position"], doc["position_ids"], cache, prefill, last)
