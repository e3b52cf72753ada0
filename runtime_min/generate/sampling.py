"""Choosing the next token from logits: greedy (temperature 0) or seeded sampling with an optional top-k."""

from __future__ import annotations

import numpy as np

from runtime_min.errors import InputError


class Sampler:
    """Greedy when temperature is 0 (deterministic); otherwise softmax(logits / temperature) over the top_k."""

    def __init__(self, temperature: float, top_k: int | None, seed: int) -> None:
        if not temperature >= 0 or (top_k is not None and top_k < 1):
            raise InputError(f"bad sampling: temperature {temperature} must be >= 0 and top_k {top_k} >= 1 or None")
        self.temperature, self.top_k = float(temperature), top_k
        self.rng = np.random.default_rng(seed)

    def __call__(self, logits: np.ndarray) -> int:
        if self.temperature == 0:
            return int(np.argmax(logits))
        scaled = logits.astype(np.float64) / self.temperature
        if self.top_k is not None and self.top_k < scaled.size:
            cut = np.partition(scaled, -self.top_k)[-self.top_k]
            scaled = np.where(scaled >= cut, scaled, -np.inf)
        weights = np.exp(scaled - scaled.max())
        return int(self.rng.choice(scaled.size, p=weights / weights.sum()))
