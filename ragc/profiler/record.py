"""Refine a personality with timings measured while running real plans (`ragc run --record`).

The compiler stores, per partition, the stats of its ops (`partition_op_stats`, computed from the graph at compile
time, because the runtime has no graph). After a run, each partition's measured time minus the device's launch
and per-op overheads is shared among its ops in proportion to the current cost model's predictions, and every op
becomes a sample with source "run". Epilogue ops (folded into their producer) get no sample of their own.
"""

from __future__ import annotations

from typing import Any

from ragc.costmodel.features import family_of_features
from ragc.errors import PersonalityError
from ragc.personality.store import Personality, load_personality, save_personality

MAX_RUN_SAMPLES = 5000  # per device; the oldest run samples are dropped first


def _check(sample: dict[str, Any], devices: list[str]) -> None:
    if sample.get("device") not in devices:
        raise PersonalityError(
            f"recorded sample names device {sample.get('device')!r}, the personality has "
            f"{', '.join(devices)}; record runs on the chip the plan was compiled for"
        )
    if not isinstance(sample.get("ms"), (int, float)) or sample["ms"] <= 0:
        raise PersonalityError(f"recorded sample has ms={sample.get('ms')!r}; pass the measured partition time in ms")
    if not isinstance(sample.get("ops"), list):
        raise PersonalityError(
            "recorded sample has no 'ops' list; pass the partition's op stats (ragc.costmodel.partition_op_stats)"
        )


def run_samples(personality: Personality, samples: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Device -> new op samples (source "run") from measured partitions
    ({"device", "ms", "ops": partition_op_stats(...)})."""
    from ragc.costmodel import CostModel

    for sample in samples:
        _check(sample, personality.devices)
    model = CostModel(personality)
    out: dict[str, list[dict[str, Any]]] = {}
    for sample in samples:
        device = sample["device"]
        ops = [o for o in sample["ops"] if not o.get("fused") and family_of_features(o["features"]) != "metadata"]
        if not ops:
            continue
        predicted = model.predict(device, [o["features"] for o in ops])
        total = sum(predicted)
        overheads = personality.dispatch_ms(device) + len(ops) * personality.op_ms(device, 0.0)
        budget = max(0.0, float(sample["ms"]) - overheads)
        for op, pred in zip(ops, predicted, strict=True):
            share = pred / total if total > 0 else 1.0 / len(ops)
            ms = personality.kernel_ms(device, personality.op_ms(device, 0.0) + budget * share)
            out.setdefault(device, []).append(
                {"op_type": op["op_type"], "features": op["features"], "ms": max(1e-4, ms), "source": "run"}
            )
    return out


def record_run(personality_or_chip: Personality | str | None, samples: list[dict[str, Any]]) -> Personality:
    """Add run-measured samples to a personality (an object, a chip's stored personality by target/path, or None
    for this chip) and save it; returns the updated personality."""
    personality = (
        personality_or_chip if isinstance(personality_or_chip, Personality) else load_personality(personality_or_chip)
    )
    if personality.is_target:
        raise PersonalityError(
            f"{personality.chip_id} is a target file, not a measured chip; record runs on the "
            "chip itself (its stored personality)"
        )
    for device, new in run_samples(personality, samples).items():
        stored = personality.samples(device)
        stored.extend(new)
        runs = [i for i, s in enumerate(stored) if s.get("source") == "run"]
        drop = set(runs[: max(0, len(runs) - MAX_RUN_SAMPLES)])
        stored[:] = [s for i, s in enumerate(stored) if i not in drop]
    save_personality(personality, personality.path)
    return personality


def sample_sources(personality: Personality) -> dict[str, dict[str, int]]:
    """Device -> {source: number of samples}."""
    counts: dict[str, dict[str, int]] = {}
    for device in personality.devices:
        for s in personality.samples(device):
            counts.setdefault(device, {}).setdefault(s.get("source", "profile"), 0)
            counts[device][s.get("source", "profile")] += 1
    return counts
