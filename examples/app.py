"""A minimal application that ships a ragc plan: it needs only runtime_min (pip install ./runtime_min[cpu,gpu]) and
the plan folder. Load once, run many times; the plan checks every input's name, dtype and shape.

    python examples/app.py plan/            # random input of the plan's shape
    python examples/app.py plan/ image.npy  # an input saved with np.save
"""

from __future__ import annotations

import sys

import numpy as np

import runtime_min


def main(plan_dir: str, image: str | None = None) -> dict[str, np.ndarray]:
    with runtime_min.load(plan_dir) as plan:  # checks the bundle, opens the processors (fallbacks warn once)
        spec = plan.inputs[0]
        x = np.load(image) if image else np.random.default_rng(0).random(spec.shape).astype(spec.dtype)
        outputs = plan.run({spec.name: x})
        for name, value in outputs.items():
            print(f"{name}: {value.dtype}{list(value.shape)}, argmax {int(value.argmax())}")
        if plan.fallbacks:
            print(f"ran some partitions on the CPU instead: {plan.fallbacks}")
        return outputs


if __name__ == "__main__":
    main(*sys.argv[1:3])
