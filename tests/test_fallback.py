"""Fallback and faults: missing, failing or disabled processors run from CPU fallbacks with one warning each; a
processor failing mid-run raises DeviceFailure, and a fresh load works again."""

from __future__ import annotations

import json
import sys

import numpy as np
import onnxruntime as ort
import pytest
from executor_plans import feeds, load_quiet, rewrite, same_bits, spread, three_processor_plan

import runtime_min
from runtime_min.backends import Executable
from runtime_min.errors import BundleError, DeviceFailure, InputError, RuntimeMinWarning

pytest_plugins = ["executor_fixtures"]  # the shared `chain` and `wants` fixtures


class Failing(Executable):
    """A prepared step whose processor breaks: raises `error` on every run and counts its calls."""

    def __init__(self, inner: Executable, error: Exception) -> None:
        self.inner, self.error, self.calls = inner, error, 0

    def run(self, feeds):
        self.calls += 1
        raise self.error

    def close(self) -> None:
        self.inner.close()


class Counting(Executable):
    def __init__(self, inner: Executable) -> None:
        self.inner, self.calls = inner, 0

    def run(self, feeds):
        self.calls += 1
        return self.inner.run(feeds)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    return three_processor_plan(tmp_path_factory.mktemp("three"))


def _image(seed: int = 0) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).standard_normal((1, 3, 16, 16)).astype(np.float32)}


def _warnings_by_processor(record) -> dict[str, int]:
    counts: dict[str, int] = {}
    for w in record:
        if issubclass(w.category, RuntimeMinWarning):
            processor = str(w.message).split()[1]
            counts[processor] = counts.get(processor, 0) + 1
    return counts


def test_disabled_processors_warn_once_each_and_match_onnxruntime(three, monkeypatch):
    monkeypatch.setenv("RAGC_DISABLE", "gpu, npu")
    with pytest.warns(RuntimeMinWarning, match=r"disabled by the load option disable \(or RAGC_DISABLE\)") as record:
        plan = runtime_min.load(three, npu="sim")
    with plan:
        assert _warnings_by_processor(record) == {"gpu": 1, "npu": 1}
        assert sorted(plan.fallbacks) == ["gpu", "npu"]
        assert {s.device for s in plan.steps} == {"cpu"}
        assert plan.tracks()["gpu"].startswith("gpu on the CPU fallback: cpu")
        got = plan.run(_image())
    session = ort.InferenceSession(str(three.parent / "m.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(got["y"], session.run(["y"], _image())[0], rtol=1e-4, atol=1e-5)


def test_the_cpu_cannot_be_disabled(chain, monkeypatch):
    monkeypatch.setenv("RAGC_DISABLE", "cpu")
    with runtime_min.load(chain) as plan:
        assert plan.fallbacks == {}
        assert plan.run(feeds())


def test_a_missing_processor_warns_and_runs_from_fallbacks(chain, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyxrt", None)  # import pyxrt raises ImportError: no XRT here
    with runtime_min.load(chain) as sequential:
        want = sequential.run(feeds())
    bundle = spread(chain, tmp_path / "s", {"p1": "npu", "p2": "npu"})
    with pytest.warns(RuntimeMinWarning, match=r"npu unavailable \(pyxrt not importable") as record:
        plan = runtime_min.load(bundle, npu="xrt")
    with plan:
        assert _warnings_by_processor(record) == {"npu": 1}
        assert same_bits(plan.run(feeds()), want)


def test_a_processor_failing_at_load_falls_back(three, monkeypatch):
    from runtime_min.backends.npu_sim import NpuSimBackend

    def broken(self, partition, bundle):
        raise RuntimeError("the array did not answer")

    monkeypatch.setattr(NpuSimBackend, "prepare", broken)
    with pytest.warns(RuntimeMinWarning, match=r"npu unavailable \(RuntimeError: the array did not answer\)"):
        plan = runtime_min.load(three, npu="sim")
    with plan:
        assert plan.steps[2].device == "cpu" and "npu" in plan.fallbacks
        assert plan.run(_image())["y"].shape == (1, 10)


def test_a_failed_processor_without_fallback_is_a_bundle_error(three, tmp_path, monkeypatch):
    monkeypatch.setenv("RAGC_DISABLE", "npu")
    bundle = spread(three, tmp_path / "s", {"p0": "gpu", "p2": "npu"})
    schedule = json.loads((bundle / "schedule.json").read_text())
    del schedule["partitions"][2]["fallback"]
    rewrite(bundle, schedule)
    with pytest.raises(BundleError, match="partition p2 needs npu .* no CPU fallback for it; recompile"):
        load_quiet(bundle, npu="sim")


def test_a_processor_failing_mid_run_raises_device_failure_until_reloaded(chain, tmp_path):
    bundle = spread(chain, tmp_path / "s", {"p0": "gpu", "p1": "npu", "p2": "gpu", "p3": "npu"})
    with runtime_min.load(chain) as sequential:
        want = sequential.run(feeds())
    plan = load_quiet(bundle)
    plan.steps[1].executable = Failing(plan.steps[1].executable, RuntimeError("device lost\nsecond line"))
    plan.steps[2].executable = later = Counting(plan.steps[2].executable)
    message = r"cpu \(running npu's fallback\) failed running partition p1 \(RuntimeError: device lost\); load the plan"
    with pytest.raises(DeviceFailure, match=message):
        plan.run(feeds())
    assert later.calls == 0  # gpu was waiting for p1: released, not run, not hung
    with pytest.raises(DeviceFailure, match="failed running partition p1"):
        plan.run(feeds())
    assert plan.steps[1].executable.calls == 1  # the broken plan refuses at once
    plan.close()
    with load_quiet(bundle) as again:
        assert same_bits(again.run(feeds()), want)


def test_a_real_processor_failure_names_it(three, tmp_path):
    with runtime_min.load(three, npu="sim") as plan:
        gpu = next(s for s in plan.steps if s.processor == "gpu")
        if gpu.device != "gpu":
            pytest.skip(f"no Vulkan device here ({plan.fallbacks['gpu']})")
        gpu.executable = Failing(gpu.executable, OSError("VK_ERROR_DEVICE_LOST"))
        with pytest.raises(DeviceFailure, match=r"^gpu failed running partition p0 \(OSError: VK_ERROR_DEVICE_LOST\)"):
            plan.run(_image())


def test_an_input_error_from_a_backend_passes_through_and_the_plan_stays_usable(chain, tmp_path):
    plan = load_quiet(spread(chain, tmp_path / "s", {"p2": "npu"}))
    with plan:
        original = plan.steps[2].executable
        plan.steps[2].executable = Failing(original, InputError("input 't1' is float64, expected float32"))
        with pytest.raises(InputError, match="'t1' is float64"):
            plan.run(feeds())
        plan.steps[2].executable = original
        assert plan.run(feeds())["t3"].shape == (2, 3)
