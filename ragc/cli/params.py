"""Option types that refuse what click's ranges let through: NaN and infinity pass FloatRange's comparisons."""

from __future__ import annotations

import math
from typing import Any

import click


class FiniteFloat(click.ParamType):
    """A finite float above `low` (or at least `low` when `inclusive`); NaN, infinities and words are refused."""

    name = "number"

    def __init__(self, low: float = 0.0, inclusive: bool = False) -> None:
        self.low, self.inclusive = low, inclusive

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        bound = "at least" if self.inclusive else "above"
        if not math.isfinite(number) or number < self.low or (number == self.low and not self.inclusive):
            self.fail(f"{value!r} is not a finite number {bound} {self.low:g}", param, ctx)
        return number


POSITIVE_SECONDS = FiniteFloat(0.0)  # a duration or a cap: > 0
TOLERANCE = FiniteFloat(0.0, inclusive=True)  # >= 0
