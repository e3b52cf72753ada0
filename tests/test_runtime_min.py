"""runtime_min: feeds are checked, results are bit-stable, and it imports nothing from the compiler side."""

import subprocess
import sys

import numpy as np
import pytest
from models import save, two_input_model

import runtime_min
from ragc.pipeline import compile_model


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    path = tmp_path_factory.mktemp("p")
    bundle = compile_model(
        save(two_input_model(), path / "m.onnx"), path / "plan", cut_before=["sigmoid"], devices="cpu"
    ).bundle
    return runtime_min.load(bundle)


def _feeds():
    rng = np.random.default_rng(3)
    return {"x": rng.standard_normal((2, 5)).astype(np.float32), "y": rng.standard_normal((2, 5)).astype(np.float32)}


def test_specs(plan):
    assert [(s.name, s.dtype, s.shape) for s in plan.inputs] == [("x", "float32", (2, 5)), ("y", "float32", (2, 5))]
    assert [s.name for s in plan.outputs] == ["a", "b"]


def test_results_match_numpy_and_repeat_bit_for_bit(plan):
    feeds = _feeds()
    first = plan.run(feeds)
    a = np.maximum(feeds["x"], 0) * 2
    np.testing.assert_allclose(first["a"], a, rtol=1e-6)
    np.testing.assert_allclose(first["b"], 1 / (1 + np.exp(-feeds["y"])) + a, rtol=1e-6)
    for _ in range(20):
        again = plan.run(feeds)
        assert all(again[k].tobytes() == first[k].tobytes() for k in first)


def test_wrong_dtype(plan):
    feeds = _feeds() | {"x": np.zeros((2, 5), np.float64)}
    with pytest.raises(runtime_min.InputError, match="'x' has dtype float64, the plan expects float32"):
        plan.run(feeds)


def test_wrong_shape(plan):
    feeds = _feeds() | {"y": np.zeros((3, 5), np.float32)}
    with pytest.raises(runtime_min.InputError, match=r"'y' has shape \[3, 5\], the plan expects \[2, 5\]"):
        plan.run(feeds)


def test_missing_and_unknown_inputs(plan):
    with pytest.raises(runtime_min.InputError, match=r"missing \['y'\], unexpected \['z'\]"):
        plan.run({"x": _feeds()["x"], "z": np.zeros(1)})


def test_feeds_are_not_modified(plan):
    feeds = _feeds()
    copies = {k: v.copy() for k, v in feeds.items()}
    plan.run(feeds)
    assert all(np.array_equal(feeds[k], copies[k]) for k in feeds)


def test_import_pulls_in_no_compiler_side_package():
    code = (
        "import sys, runtime_min, runtime_min.backends.cpu;"
        "bad = [m for m in ('onnx', 'onnx_graphsurgeon', 'sklearn', 'jinja2', 'click', 'ragc', 'codegen', 'scipy')"
        " if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
