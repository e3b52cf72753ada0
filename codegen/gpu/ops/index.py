"""Index arithmetic shared by the data-movement and reduction lowerings: strided views as GLSL expressions."""

from __future__ import annotations

from collections.abc import Sequence

Dims = tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]


def merge_dims(sizes: Sequence[int], *stride_sets: Sequence[int]) -> Dims:
    """Drop size-1 dims and merge neighbours that every stride set walks contiguously; returns (sizes, strides)
    with one stride tuple per set, describing the same element order with fewer div/mod operations."""
    kept = [d for d, size in enumerate(sizes) if size != 1]
    out_sizes: list[int] = []
    out_strides: list[list[int]] = [[] for _ in stride_sets]
    for d in kept:
        if out_sizes and all(s[-1] == st[d] * sizes[d] for s, st in zip(out_strides, stride_sets, strict=True)):
            out_sizes[-1] *= sizes[d]
            for s, st in zip(out_strides, stride_sets, strict=True):
                s[-1] = st[d]
            continue
        out_sizes.append(sizes[d])
        for s, st in zip(out_strides, stride_sets, strict=True):
            s.append(st[d])
    return tuple(out_sizes), tuple(tuple(s) for s in out_strides)


def offset_expr(sizes: Sequence[int], strides: Sequence[int], var: str, base: int = 0) -> str:
    """GLSL int expression: `base` plus the offset, under `strides`, of row-major flat index `var` (a uint) of
    a tensor of `sizes` (strides may be negative or zero)."""
    terms = [str(base)] if base else []
    inner = 1
    for d in range(len(sizes) - 1, -1, -1):
        size, stride = sizes[d], strides[d]
        if size != 1 and stride != 0:
            coord = var if inner == 1 else f"({var} / {inner}u)"
            if d > 0:
                coord = f"({coord} % {size}u)"
            terms.append(f"int({coord})" if stride == 1 else f"int({coord}) * {stride}")
        inner *= size
    return " + ".join(terms) or "0"
