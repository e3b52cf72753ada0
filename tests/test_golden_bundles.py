"""The format policy: a bundle of every released format version lives in tests/golden/ (docs/bundle-format.md lists
them); the runtime reads each version it claims and refuses the others, and a newer one, with one line."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from hostile_fixtures import edit_json

import runtime_min
from runtime_min.errors import BundleError
from runtime_min.format import FORMAT_VERSION, READABLE_VERSIONS

GOLDEN = Path(__file__).resolve().parent / "golden"
TINYNET = Path(__file__).resolve().parent.parent / "examples" / "tinynet.onnx"
RELEASED = {1: "ragc 0.1", 2: "ragc 0.2", 3: "ragc 0.2 (adaptive)"}


def _reference(feeds):
    session = ort.InferenceSession(str(TINYNET), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def test_a_golden_bundle_exists_for_every_released_version():
    assert sorted(int(p.name.removeprefix("format-")) for p in GOLDEN.iterdir()) == sorted(RELEASED)
    assert FORMAT_VERSION == max(RELEASED)


@pytest.mark.parametrize("version", READABLE_VERSIONS)
@pytest.mark.parametrize("disable", [(), ("gpu", "npu")])
def test_readable_versions_load_and_match_onnxruntime(version, disable):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", runtime_min.RuntimeMinWarning)
        plan = runtime_min.load(GOLDEN / f"format-{version}", npu="sim", disable=disable)
    feeds = {s.name: np.random.default_rng(1).random(s.shape).astype(s.dtype) for s in plan.inputs}
    got, want = next(iter(plan.run(feeds).values())), _reference(feeds)
    bf16 = "npu" in plan.processors and "npu" not in plan.fallbacks  # the NPU computes in bf16
    scale = float(np.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=2e-2 if bf16 else 1e-4, atol=1e-2 * scale if bf16 else 1e-5)


@pytest.mark.parametrize("version", sorted(set(RELEASED) - set(READABLE_VERSIONS)))
def test_older_versions_are_refused_with_one_line(version):
    with pytest.raises(BundleError, match=f"bundle format {version} is older than this runtime reads"):
        runtime_min.load(GOLDEN / f"format-{version}")


def test_a_newer_version_is_refused_with_one_line(tmp_path):
    bundle = shutil.copytree(GOLDEN / f"format-{FORMAT_VERSION}", tmp_path / "b")
    edit_json(bundle, "manifest.json", lambda m: m | {"format_version": FORMAT_VERSION + 1})
    with pytest.raises(BundleError, match="newer than this runtime reads .*; upgrade runtime_min"):
        runtime_min.load(bundle)
