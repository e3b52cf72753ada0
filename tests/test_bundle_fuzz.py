"""The bundle fuzzer in CI: RAGC_FUZZ_EXAMPLES mutations per plan kind (default 700: 2,100 in all), derandomised so
a failure reproduces; `python bench/fuzz.py` runs many more."""

from __future__ import annotations

import os

import pytest
from bundle_fuzz import check, mutations
from hostile_fixtures import compile_plans
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("RAGC_FUZZ_EXAMPLES", "700"))
PLANS: dict = {}


@pytest.fixture(scope="module", autouse=True)
def plans(tmp_path_factory):
    PLANS.update(compile_plans(tmp_path_factory.mktemp("fuzz")))
    yield
    PLANS.clear()


@pytest.mark.parametrize("kind", ["cpu", "gpu", "three"])
def test_mutated_bundles_give_one_line_errors_or_sound_runs(kind):
    if kind != "cpu":
        pytest.importorskip("vulkan")
    seen: dict[str, int] = {}

    quiet = list(HealthCheck)

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, suppress_health_check=quiet)
    @given(st.data())
    def fuzz(data):
        result = check(PLANS[kind], data.draw(mutations(PLANS[kind])))
        seen[result] = seen.get(result, 0) + 1

    fuzz()
    assert seen.get("error", 0) > EXAMPLES // 4  # the mutations do reach the checks
