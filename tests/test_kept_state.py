"""Plan.keep_state: inputs kept between runs (a KV cache), updated in place where the one partition reading them
is a ScatterND into them (the GPU arena, an onnxruntime I/O binding), else held in host memory; the answers are
the bits of feeding the state by hand, and bad use is one InputError line."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from hostile_fixtures import TARGET, edit_json
from onnx import TensorProto, helper

import runtime_min
from ragc.pipeline import compile_model
from runtime_min.errors import BundleError, InputError

ROWS, WIDTH = 16, 8


def cache_model(also_read: bool = False) -> onnx.ModelProto:
    """y = sum over rows of tanh(cache') where cache' is the cache with row `position` set to `row`; `also_read`:
    the cache itself is read once more (no longer updatable in place)."""
    f, i = TensorProto.FLOAT, TensorProto.INT64
    nodes = [
        helper.make_node("Unsqueeze", ["position", "axes"], ["index"]),
        helper.make_node("ScatterND", ["cache", "index", "row"], ["updated"]),
        helper.make_node("Tanh", ["updated"], ["squashed"]),
        helper.make_node("ReduceSum", ["squashed", "axes"], ["y"], keepdims=0),
    ]
    if also_read:
        nodes[3:] = [helper.make_node("Mul", ["squashed", "cache"], ["both"])]
        nodes.append(helper.make_node("ReduceSum", ["both", "axes"], ["y"], keepdims=0))
    graph = helper.make_graph(
        nodes,
        "cache",
        [
            helper.make_tensor_value_info("cache", f, [ROWS, WIDTH]),
            helper.make_tensor_value_info("position", i, [1]),
            helper.make_tensor_value_info("row", f, [1, WIDTH]),
        ],
        [helper.make_tensor_value_info("y", f, [WIDTH]), helper.make_tensor_value_info("updated", f, [ROWS, WIDTH])],
        [helper.make_tensor("axes", i, [1], [0])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def compiled(tmp_path, devices: str, also_read: bool = False):
    onnx.save(cache_model(also_read), tmp_path / "m.onnx")
    return compile_model(tmp_path / "m.onnx", tmp_path / "plan", devices=devices, target=TARGET).bundle


def steps(count: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        {"position": np.array([p % ROWS]), "row": rng.standard_normal((1, WIDTH)).astype(np.float32)}
        for p in range(count)
    ]


def by_hand(plan, feeds: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """What a caller feeding the cache itself gets: the reference."""
    cache, out = np.zeros((ROWS, WIDTH), np.float32), []
    for f in feeds:
        got = plan.run(f | {"cache": cache})
        cache = got["updated"]
        out.append(got)
    return out


@pytest.mark.parametrize(("devices", "kept_on"), [("cpu", "cpu"), ("gpu", "gpu")])
def test_kept_in_place_gives_the_bits_of_feeding_it(tmp_path, devices, kept_on):
    bundle = compiled(tmp_path, devices)
    schedule = json.loads((bundle / "schedule.json").read_text())
    assert [p.get("in_place") for p in schedule["partitions"]] == [{"cache": "updated"}]
    feeds = steps(20)  # wraps around the 16 rows
    with runtime_min.load(bundle) as plain:
        if plain.fallbacks:
            pytest.skip(f"no Vulkan device: {plain.fallbacks}")
        want = by_hand(plain, feeds)
    with runtime_min.load(bundle) as plan:
        assert plan.keep_state({"cache": "updated"}) == {"cache": kept_on}
        for f, w in zip(feeds, want, strict=True):
            got = plan.run(f, outputs=["y"])
            assert list(got) == ["y"] and np.array_equal(got["y"], w["y"])
        assert np.array_equal(plan.run(feeds[0], outputs=["updated"])["updated"], by_hand_after(want, feeds[0]))
        fresh = plan.run(feeds[0] | {"cache": np.ones((ROWS, WIDTH), np.float32)})  # a fed value sets the state
        assert np.array_equal(fresh["updated"][1:], np.ones((ROWS - 1, WIDTH), np.float32))
        assert plan.keep_state({"cache": "updated"}) == {"cache": kept_on}  # the same pairs again: no change


def by_hand_after(want, feed):
    """The cache after one more step of `feed` following the reference run."""
    cache = want[-1]["updated"].copy()
    cache[feed["position"][0]] = feed["row"][0]
    return cache


def test_gpu_runs_move_no_cache(tmp_path):
    with runtime_min.load(compiled(tmp_path, "gpu")) as plan:
        if plan.fallbacks:
            pytest.skip(f"no Vulkan device: {plan.fallbacks}")
        plan.keep_state({"cache": "updated"})
        plan.run(steps(1)[0], outputs=["y"])
        before = plan.copy_stats()
        for f in steps(5, seed=1):
            plan.run(f, outputs=["y"])
        moved = plan.copy_stats().bytes_copied - before.bytes_copied
        assert moved < 5 * ROWS * WIDTH * 4  # the inputs and y, never the 512-byte cache each way


def test_a_cache_read_elsewhere_is_held_in_host_memory(tmp_path):
    feeds = steps(6, seed=2)
    with runtime_min.load(compiled(tmp_path, "cpu", also_read=True)) as plan:
        want = by_hand(plan, feeds)
    with runtime_min.load(compiled(tmp_path, "cpu", also_read=True)) as plan:
        assert plan.keep_state({"cache": "updated"}) == {"cache": "host"}
        for f, w in zip(feeds, want, strict=True):
            assert np.array_equal(plan.run(f)["y"], w["y"])


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ({"nope": "updated"}, "cannot keep 'nope' as 'updated': give a plan input and a plan output"),
        ({"position": "updated"}, "of the same dtype and shape"),
        (["cache"], "keep_state takes a dict of input name -> output name"),
    ],
)
def test_bad_pairs_are_one_line(tmp_path, pairs, message):
    with runtime_min.load(compiled(tmp_path, "cpu")) as plan, pytest.raises(InputError, match=message):
        plan.keep_state(pairs)


def test_a_plan_keeping_state_runs_one_frame_at_a_time(tmp_path):
    with runtime_min.load(compiled(tmp_path, "cpu")) as plan:
        plan.keep_state({"cache": "updated"})
        with pytest.raises(InputError, match=r"keeps state \(keep_state\): run it with run\(\), not submit\(\)"):
            plan.submit(steps(1)[0])
        with pytest.raises(InputError, match=r"not stream\(\)"):
            plan.stream([steps(1)[0]])
        with pytest.raises(InputError, match="already keeps"):
            plan.keep_state({})
        with pytest.raises(InputError, match="missing \\['row'\\]"):
            plan.run({"position": np.array([0])})


def test_a_bundle_with_a_wrong_in_place_pair_is_refused(tmp_path):
    bundle = compiled(tmp_path, "cpu")

    def wrong(schedule):
        schedule["partitions"][0]["in_place"] = {"position": "updated"}
        return schedule

    edit_json(bundle, "schedule.json", wrong)
    with pytest.raises(BundleError, match="in_place pairs are not an input and an output of the same dtype"):
        runtime_min.load(bundle)
