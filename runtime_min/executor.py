"""Execute a plan's steps, passing tensors between partitions."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from runtime_min.plan import Step


def run_in_order(steps: list[Step], feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every step in schedule order (already topological), one after another."""
    values = dict(feeds)
    for step in steps:
        inputs = {spec["name"]: values[spec["name"]] for spec in step.partition["inputs"]}
        values.update(step.executable.run(inputs))
    return values
