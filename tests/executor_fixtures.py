"""Fixtures shared by the executor tests, which load this module with `pytest_plugins = ["executor_fixtures"]`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from executor_plans import chain_ops, compile_split, feeds

import runtime_min


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> Path:
    """relu(x) -> sigmoid -> tanh -> + y on the CPU, one partition per op (p0..p3): tests import this fixture."""
    return compile_split(chain_ops(4), tmp_path_factory.mktemp("chain"))


@pytest.fixture(scope="module")
def wants(chain) -> list[dict[str, np.ndarray]]:
    """The chain's outputs for feeds(0..11), run one partition after another on the CPU."""
    with runtime_min.load(chain) as plan:
        return [plan.run(feeds(seed)) for seed in range(12)]
