"""The app developer's API: choosing outputs, preallocated outputs filled in place, submit -> Future, the
thread-safety rule (concurrent runs on one plan give the bits of sequential ones), docstrings, py.typed; hostile
outputs/out values are one InputError line."""

from __future__ import annotations

import concurrent.futures
import inspect
import threading
from pathlib import Path

import numpy as np
import pytest
from hostile_fixtures import TARGET
from models import save, two_input_model

import ragc
import runtime_min
from ragc.pipeline import compile_model
from runtime_min.errors import InputError, RuntimeMinError


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api")
    model = save(two_input_model(), folder / "m.onnx")
    place = ["sigmoid=gpu", "relu=cpu"]  # two processors: the threaded executor (lavapipe in CI)
    bundle = compile_model(model, folder / "plan", devices="cpu,gpu", target=TARGET, place=place).bundle
    with runtime_min.load(bundle) as loaded:
        assert len(loaded.processors) == 2  # one worker thread each, even where the GPU falls back
        yield loaded


def feeds(seed=0):
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal((2, 5)).astype(np.float32) for n in ("x", "y")}


def test_choose_outputs(plan):
    everything = plan.run(feeds())
    assert list(everything) == ["a", "b"]
    only_b = plan.run(feeds(), outputs=["b"])
    assert list(only_b) == ["b"] and np.array_equal(only_b["b"], everything["b"])
    assert plan.run(feeds(), outputs=["b", "a"]).keys() == {"a", "b"}
    assert plan.run(feeds(), outputs=[]) == {}


def test_preallocated_outputs_are_filled_in_place(plan):
    want = plan.run(feeds(1))
    buffer = np.full((2, 5), np.nan, np.float32)
    got = plan.run(feeds(1), out={"b": buffer})
    assert got["b"] is buffer and np.array_equal(buffer, want["b"]) and np.array_equal(got["a"], want["a"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"outputs": "a"}, "give outputs as a list of output names"),
        ({"outputs": ["nope"]}, "output 'nope' is not among the outputs asked for"),
        ({"out": [np.zeros((2, 5), np.float32)]}, "out as a dict"),
        ({"out": {"nope": np.zeros((2, 5), np.float32)}}, "output 'nope'"),
        ({"outputs": ["a"], "out": {"b": np.zeros((2, 5), np.float32)}}, "output 'b' is not among the outputs asked"),
        ({"out": {"b": np.zeros((5, 2), np.float32)}}, r"out\['b'\] must be a writable numpy array of float32\[2, 5\]"),
        ({"out": {"b": np.zeros((2, 5), np.float64)}}, r"out\['b'\] must be"),
        ({"out": {"b": [[0.0] * 5] * 2}}, r"out\['b'\] must be"),
        ({"out": {"b": np.broadcast_to(np.float32(0), (2, 5))}}, r"out\['b'\] must be a writable"),
    ],
)
def test_bad_outputs_and_out_are_one_line(plan, kwargs, message):
    with pytest.raises(InputError, match=message):
        plan.run(feeds(), **kwargs)
    with pytest.raises(InputError, match=message):
        plan.submit(feeds(), **kwargs)


def test_submit_returns_futures_in_order(plan):
    wants = [plan.run(feeds(s)) for s in range(6)]
    futures = [plan.submit(feeds(s), outputs=["b"]) for s in range(6)]
    assert all(isinstance(f, concurrent.futures.Future) for f in futures)
    for future, want in zip(futures, wants, strict=True):
        assert np.array_equal(future.result(timeout=30)["b"], want["b"])
    assert not futures[0].cancel()  # running or done: a submitted run cannot be taken back


def test_a_failing_run_fails_its_future_and_bad_feeds_fail_at_once(plan):
    with pytest.raises(InputError, match="has shape"):
        plan.submit({"x": np.zeros((3, 5), np.float32), "y": np.zeros((2, 5), np.float32)})
    with pytest.raises(InputError, match="missing"):
        plan.submit({})


def test_concurrent_runs_on_one_plan_give_the_sequential_bits(plan):
    wants = {s: plan.run(feeds(s)) for s in range(8)}
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            for _ in range(25):
                got = plan.run(feeds(seed))
                assert all(np.array_equal(got[k], wants[seed][k]) for k in got)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_a_closed_plan_refuses_submit(tmp_path):
    model = save(two_input_model(), tmp_path / "m.onnx")
    bundle = compile_model(model, tmp_path / "plan", devices="cpu", target=TARGET).bundle
    loaded = runtime_min.load(bundle)
    future = loaded.submit(feeds())
    loaded.close()
    assert future.result(timeout=30).keys() == {"a", "b"}  # submitted before close: it finished
    with pytest.raises(RuntimeMinError, match="closed"):
        loaded.submit(feeds())


def test_public_names_have_docstrings_and_the_rule_is_stated():
    for module in (runtime_min, ragc):
        for name in getattr(module, "__all__", [n for n in dir(module) if not n.startswith("_")]):
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                assert inspect.getdoc(obj), f"{module.__name__}.{name} has no docstring"
    for name, member in inspect.getmembers(runtime_min.Plan, inspect.isfunction):
        if not name.startswith("_"):
            assert inspect.getdoc(member), f"Plan.{name} has no docstring"
    assert "Thread safety" in inspect.getdoc(runtime_min.Plan)
    for package in (runtime_min, ragc):
        assert (Path(package.__file__).parent / "py.typed").is_file()
