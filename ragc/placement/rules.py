"""Forced placement rules from `--place PATTERN=DEVICE`: PATTERN is a node name, an op type (Conv), or `*`.

A node-name rule is strict: that node must run there. An op-type or `*` rule takes the matching ops the device can
run and leaves the others to the solver; it is an error only when the device runs none of them.
"""

from __future__ import annotations

from collections.abc import Callable

from ragc import ir
from ragc.errors import PlacementError, UsageError
from runtime_min.format import PROCESSORS as DEVICES

Reason = Callable[[ir.Op, str], "str | None"]  # (op, device) -> why the device cannot run it, or None


def parse_rules(specs: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    rules = []
    for spec in specs:
        pattern, sep, device = spec.rpartition("=")
        if not sep or not pattern or device not in DEVICES:
            raise UsageError(f"bad --place {spec!r}: write PATTERN=DEVICE with DEVICE one of {', '.join(DEVICES)}")
        rules.append((pattern, device))
    return rules


def forced_devices(graph: ir.Graph, rules: list[tuple[str, str]], reason: Reason) -> dict[str, str]:
    """Op name -> device for every op a rule places; later rules win."""
    names = {op.name for op in graph.ops}
    types = {op.op_type for op in graph.ops}
    unmatched = sorted({p for p, _ in rules} - names - types - {"*"})
    if unmatched:
        raise UsageError(f"--place pattern(s) {', '.join(unmatched)} match no op type or node name in the model")
    forced: dict[str, str] = {}
    for pattern, device in rules:
        if pattern in names:
            why = reason(graph.op(pattern), device)
            if why:
                raise PlacementError(f"--place puts {pattern} on {device}, which cannot run it: {why}")
            forced[pattern] = device
            continue
        matching = [op for op in graph.ops if pattern in ("*", op.op_type)]
        runnable = [op for op in matching if reason(op, device) is None]
        if not runnable:
            raise PlacementError(
                f"--place {pattern}={device}: {device} can run none of the {len(matching)} matching ops "
                f"(e.g. {matching[0].name}: {reason(matching[0], device)})"
            )
        forced.update(dict.fromkeys((op.name for op in runnable), device))
    return forced
