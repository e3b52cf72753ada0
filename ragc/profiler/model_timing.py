"""One evaluation model as measured on one processor: its op samples and its whole-run time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ragc.ir import Graph


@dataclass
class ModelTiming:
    name: str
    graph: Graph
    samples: list[dict[str, Any]]  # one per timed non-metadata op: {"op", "op_type", "features", "ms", "source"}
    measured_ms: float  # whole model, one session run
    noise_pct: float = 0.0  # how far apart the counted blocks' wall times were (BlockTimer.spread_pct)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, without the graph (model_set rebuilds it from the name)."""
        return {
            "name": self.name,
            "samples": self.samples,
            "measured_ms": self.measured_ms,
            "noise_pct": self.noise_pct,
        }
