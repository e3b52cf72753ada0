"""Which dispatches of a GPU program must wait for the ones before them (the program's per-dispatch "barrier").

A dispatch needs a barrier when it reads or writes memory that a dispatch since the last barrier wrote, or writes
memory one of them read. Memory is compared as byte ranges of the weights and arena regions, so scratch tensors
that share arena space by lifetime count as the same memory.
"""

from __future__ import annotations

from typing import Any

Range = tuple[str, int, int]  # region, first byte, end byte


def _range(entry: dict[str, Any]) -> Range:
    return entry["region"], entry["offset"], entry["offset"] + entry["nbytes"]


def _overlaps(r: Range, ranges: list[Range]) -> bool:
    return any(r[0] == o[0] and r[1] < o[2] and o[1] < r[2] for o in ranges)


def barriers(dispatches: list[tuple[tuple[str, ...], int]], tensors: dict[str, dict[str, Any]]) -> list[bool]:
    """Per dispatch (its bound tensors and how many of the first are written), whether it must wait for the
    dispatches before it; the first never does (the copies of inputs are the runtime's to order)."""
    written: list[Range] = []
    read: list[Range] = []
    needed = []
    for buffers, writes in dispatches:
        ranges = [_range(tensors[name]) for name in buffers]
        outs, ins = ranges[:writes], ranges[writes:]
        wait = any(_overlaps(r, written) for r in ranges) or any(_overlaps(r, read) for r in outs)
        if wait:
            written, read = [], []
        written += outs
        read += ins
        needed.append(wait)
    return needed
