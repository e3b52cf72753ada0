"""Adaptive bundles: several variants of one plan and the compiled rule that picks one per run from live signals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runtime_min import format as fmt
from runtime_min.adaptive.plan import AdaptivePlan
from runtime_min.adaptive.rule import Rule
from runtime_min.adaptive.signals import LiveSignals, ReplaySignals, default_readers
from runtime_min.errors import InputError
from runtime_min.manifest import read_bundle
from runtime_min.options import LoadOptions
from runtime_min.plan import Plan


def variant_files(manifest: dict[str, Any]) -> dict[str, str]:
    """The bundle's variants, name -> schedule file, checked (empty for a bundle of one plan)."""
    table = manifest.get("variants")
    if table is None:
        return {}
    if not isinstance(table, dict) or not table:
        raise fmt.bad(fmt.MANIFEST, "'variants' is not an object of variants")
    files = manifest["files"]
    out = {}
    for name, entry in sorted(table.items()):
        where = f"{fmt.MANIFEST} variant {name!r}"
        out[name] = fmt.need_file(fmt.need_str(entry, "schedule", where), where)
        if out[name] not in files:
            raise fmt.bad(where, f"its schedule {out[name]!r} is not listed in files")
        fmt.need_number(entry, "predicted_ms", where)
    return out


def load_bundle(path: str | Path, options: LoadOptions, variant: str | None = None) -> Plan | AdaptivePlan:
    """A Plan for a bundle of one plan; an AdaptivePlan (pinned to `variant` when given) for one of variants."""
    bundle = read_bundle(path, options.verify)
    files = variant_files(bundle.manifest)
    if variant is not None and variant not in files:
        held = ", ".join(files) or "none: it holds one plan"
        raise InputError(f"variant {variant!r} is not in this bundle (variants: {held}); give one of them")
    if not files:
        return Plan(bundle, options)
    rule = Rule.from_json(bundle.manifest.get("rule"), set(files))
    names = [variant] if variant is not None else list(files)
    plans: dict[str, Plan] = {}
    try:
        for name in names:
            same = files[name] == fmt.SCHEDULE
            plans[name] = Plan(bundle if same else read_bundle(path, False, files[name]), options)
    except BaseException:
        for plan in plans.values():
            plan.close()
        raise
    signals = LiveSignals().start() if variant is None else LiveSignals({})
    return AdaptivePlan(plans, rule, signals, variant)


__all__ = ["AdaptivePlan", "LiveSignals", "ReplaySignals", "Rule", "default_readers", "load_bundle", "variant_files"]
