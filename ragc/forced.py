"""Forced placement rules from `--place PATTERN=DEVICE`: PATTERN is an op type (Conv), a node name, or `*`."""

from __future__ import annotations

from ragc import ir
from ragc.errors import UsageError
from ragc.support import DEVICES


def parse_rules(specs: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    rules = []
    for spec in specs:
        pattern, sep, device = spec.rpartition("=")
        if not sep or not pattern or device not in DEVICES:
            raise UsageError(f"bad --place {spec!r}: write PATTERN=DEVICE with DEVICE one of {', '.join(DEVICES)}")
        rules.append((pattern, device))
    return rules


def forced_devices(graph: ir.Graph, rules: list[tuple[str, str]]) -> dict[str, str]:
    """Op name -> device for every op a rule matches; later rules win."""
    patterns = {p for p, _ in rules} - {"*"}
    known = {op.op_type for op in graph.ops} | {op.name for op in graph.ops}
    unmatched = sorted(patterns - known)
    if unmatched:
        raise UsageError(f"--place pattern(s) {', '.join(unmatched)} match no op type or node name in the model")
    forced: dict[str, str] = {}
    for pattern, device in rules:
        for op in graph.ops:
            if pattern in ("*", op.op_type, op.name):
                forced[op.name] = device
    return forced
