"""The executor: one worker per processor, explicit waits, bit-stable results, no deadlock on any valid schedule."""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest
from executor_plans import BINARY, UNARY, compile_split, feeds, load_quiet, same_bits, spread
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runtime_min
from runtime_min.errors import BundleError

PSEUDO = ("gpu", "npu")

pytest_plugins = ["executor_fixtures"]  # the shared `chain` and `wants` fixtures


def test_three_workers_repeat_the_sequential_result_bit_for_bit(chain, wants, tmp_path):
    bundle = spread(chain, tmp_path / "s", {"p0": "gpu", "p1": "npu", "p2": "cpu"})
    with load_quiet(bundle) as plan:
        assert sorted(plan.fallbacks) == list(PSEUDO)
        for _ in range(100):
            assert same_bits(plan.run(feeds()), wants[0])


def test_results_match_numpy(wants):
    f = feeds()
    want = np.tanh(1 / (1 + np.exp(-np.maximum(f["x"], 0)))) + f["y"]
    np.testing.assert_allclose(wants[0]["t3"], want, rtol=1e-5, atol=1e-6)


def test_callers_on_several_threads_each_get_their_own_result(chain, wants, tmp_path):
    bundle = spread(chain, tmp_path / "s", {"p1": "npu", "p3": "npu"})
    with load_quiet(bundle) as plan:
        got: dict[int, bool] = {}

        def caller(seed: int) -> None:
            got[seed] = all(same_bits(plan.run(feeds(seed)), wants[seed]) for _ in range(20))

        threads = [threading.Thread(target=caller, args=(seed,)) for seed in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert got == dict.fromkeys(range(4), True)


def test_step_times_of_the_last_run(chain, tmp_path):
    with load_quiet(spread(chain, tmp_path / "s", {"p2": "npu"})) as plan:
        assert plan.last_step_times() == []
        plan.run(feeds())
        times = plan.last_step_times()
    assert [t["partition"] for t in times] == ["p0", "p1", "p2", "p3"]
    assert all(t["device"] == "cpu" and t["start_ms"] >= 0 and t["duration_ms"] >= 0 for t in times)
    assert sorted(times[0]) == ["device", "duration_ms", "partition", "start_ms"]


def test_a_step_before_its_producer_on_the_same_processor_is_refused(chain, tmp_path):
    bundle = spread(chain, tmp_path / "s", {}, order=["p1", "p0", "p2", "p3"])
    with pytest.raises(BundleError, match="partition p1 runs before p0, which it needs; recompile"):
        runtime_min.load(bundle)


def test_processors_waiting_on_each_other_forever_are_refused(chain, tmp_path):
    # gpu runs p3 first, which needs p2 on npu, which needs p0 on gpu after p3: a cycle no run could finish
    order = ["p3", "p0", "p1", "p2"]
    bundle = spread(chain, tmp_path / "s", {"p0": "gpu", "p1": "npu", "p2": "npu", "p3": "gpu"}, order)
    with pytest.raises(BundleError, match="processors wait on each other forever"):
        load_quiet(bundle)


def test_worker_threads_end_with_their_plan(chain, tmp_path):
    def workers() -> list[str]:
        return sorted(t.name for t in threading.enumerate() if t.name.startswith("runtime_min:"))

    assert workers() == []
    plan = load_quiet(spread(chain, tmp_path / "s", {"p1": "npu"}))
    plan.run(feeds())
    assert workers() == ["runtime_min:cpu", "runtime_min:npu"]
    plan.close()
    assert workers() == []
    dropped = load_quiet(spread(chain, tmp_path / "s", {"p1": "npu"}))
    dropped.run(feeds())
    del dropped
    gc.collect()
    assert workers() == []


def test_closed_plan_says_to_load_again(chain):
    plan = runtime_min.load(chain)
    plan.close()
    with pytest.raises(runtime_min.RuntimeMinError, match="closed; load it again"):
        plan.run(feeds())


@st.composite
def dag_plans(draw):
    """A random DAG of 2..7 elementwise ops reading x and y, each op's partition on a random pseudo-processor, and
    a random topological step order."""
    n = draw(st.integers(2, 7))
    ops = [("Add", (0, 1))]
    for k in range(1, n):
        available = st.integers(0, k + 1)
        if draw(st.booleans()):
            ops.append((draw(st.sampled_from(BINARY)), (draw(available), draw(available))))
        else:
            ops.append((draw(st.sampled_from(UNARY)), (draw(available),)))
    devices = draw(st.lists(st.sampled_from(("cpu", *PSEUDO)), min_size=n, max_size=n))
    priority = draw(st.permutations(range(n)))
    return ops, devices, priority


def _topological(ops, priority) -> list[int]:
    """Ops in an order that respects their inputs, ties broken by `priority`."""
    order: list[int] = []
    while len(order) < len(ops):
        ready = [k for k in range(len(ops)) if k not in order and all(i < 2 or i - 2 in order for i in ops[k][1])]
        order.append(min(ready, key=lambda k: priority[k]))
    return order


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dag_plans())
def test_random_dags_on_random_workers_finish_with_the_sequential_result(tmp_path_factory, case):
    ops, devices, priority = case
    folder = tmp_path_factory.mktemp("dag")
    bundle = compile_split(ops, folder)
    with runtime_min.load(bundle) as sequential:
        want = sequential.run(feeds())
        op_of = {step.id: int(step.partition.ops[0][1:]) for step in sequential.steps}
    pid_of = {k: pid for pid, k in op_of.items()}
    order = [pid_of[k] for k in _topological(ops, priority)]
    spread_bundle = spread(bundle, folder / "spread", {pid_of[k]: d for k, d in enumerate(devices)}, order)
    with load_quiet(spread_bundle) as plan:
        for _ in range(3):
            assert same_bits(plan.run(feeds()), want)
