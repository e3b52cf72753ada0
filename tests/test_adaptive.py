"""Adaptive bundles end to end: `ragc compile --variants` stores each artifact once, every variant's outputs agree
with onnxruntime, the runtime follows replayed signals per run and per stream frame, pins a variant, marks traces,
and a hostile rule is one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from adaptive_fixtures import TARGET, matmul_chain
from hostile_fixtures import edit_json

import runtime_min
from runtime_min.adaptive import ReplaySignals
from runtime_min.errors import BundleError, InputError


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return matmul_chain(tmp_path_factory.mktemp("adaptive") / "chain.onnx", width=768, rows=128, layers=2)


@pytest.fixture(scope="module")
def bundle(model) -> Path:
    out = model.parent / "plan"
    result = subprocess.run(
        [sys.executable, "-m", "ragc.cli", "compile", model, "-o", out, "--target", TARGET, "--variants", "-q"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return out


def _load(path: Path, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", runtime_min.RuntimeMinWarning)
        return runtime_min.load(path, npu="sim", **options)


def _feeds() -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(3).standard_normal((128, 768)).astype(np.float32)}


def _trace(path: Path, lines: list[dict]) -> ReplaySignals:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return ReplaySignals(path)


def test_variants_share_identical_artifacts(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["format_version"] == 3 == runtime_min.FORMAT_VERSION
    table = manifest["variants"]
    assert set(table) == {"latency", "no-gpu", "no-npu", "gpu-busy"} and manifest["default_variant"] == "latency"
    assert table["gpu-busy"]["contention_factor"] == 3.0 and table["gpu-busy"]["contention_source"] == "default"
    assert "gpu" in table["latency"]["devices"] and "gpu" not in table["no-gpu"]["devices"]
    artifacts = [n for n in manifest["files"] if n.endswith((".onnx", ".spv", ".gpu.json", ".npu.json"))]
    digests = Counter(manifest["files"][n] for n in artifacts)
    assert max(digests.values()) == 1  # each distinct artifact once
    schedules = [json.loads((bundle / v["schedule"]).read_text()) for v in table.values()]
    used = [f for s in schedules for p in s["partitions"] for f in p["artifact"]["files"]]
    assert len(used) > len(set(used))  # variants with the same partition point at the same files
    assert sorted(
        set(used) | {f for s in schedules for p in s["partitions"] for f in (p.get("fallback") or {}).get("files", [])}
    ) == sorted(artifacts)


def test_every_variant_agrees_with_onnxruntime(bundle, model):
    feeds = _feeds()
    want = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    with _load(bundle) as plan:
        assert sorted(plan.plans) == ["gpu-busy", "latency", "no-gpu", "no-npu"]  # all prepared at load
        for variant in plan.plans.values():
            got = variant.run(feeds)["r1"]
            np.testing.assert_allclose(got, want, rtol=3e-2, atol=3e-2 * float(np.abs(want).max()))  # NPU: bf16
    with _load(bundle, variant="no-gpu") as pinned:
        first, again = pinned.run(feeds)["r1"], pinned.run(feeds)["r1"]
        assert list(pinned.plans) == ["no-gpu"] and pinned.last_variant()["reason"].startswith("pinned")
    assert np.array_equal(first, again)  # the same variant twice: the same bits


def test_runs_follow_replayed_signals_and_traces_name_the_variant(bundle, tmp_path):
    busy = [0, 90, 70, 50, 20]
    with _load(bundle) as plan:
        plan.use_signals(_trace(tmp_path / "s.jsonl", [{"gpu_busy": b} for b in busy]))
        got = []
        for i in range(len(busy)):
            plan.run(_feeds(), trace=tmp_path / "t.json" if i == 1 else None)
            got.append(plan.last_variant()["variant"])
        assert plan.last_variant()["signals"]["gpu_busy"] == 20
    assert got == ["latency", "no-gpu", "no-gpu", "gpu-busy", "latency"]
    doc = json.loads((tmp_path / "t.json").read_text())
    assert doc["otherData"]["variant"]["variant"] == "no-gpu"
    assert any(e["name"] == "variant no-gpu" and e["ph"] == "i" for e in doc["traceEvents"])


def test_a_stream_switches_between_frames(bundle, tmp_path):
    feeds = _feeds()
    with _load(bundle, variant="latency") as pinned:
        want = pinned.run(feeds)["r1"]
    with _load(bundle) as plan:
        plan.use_signals(_trace(tmp_path / "s.jsonl", [{"gpu_busy": 0}, {"gpu_busy": 0}, {"gpu_busy": 95}]))
        outs = list(plan.stream([feeds] * 4, depth=2))
        assert plan.last_variant()["variant"] == "no-gpu"
        with pytest.raises(InputError, match="variant=NAME to trace a stream"):
            list(plan.stream([feeds], trace=tmp_path / "t.json"))
    for out in outs:
        np.testing.assert_allclose(out["r1"], want, rtol=3e-2, atol=3e-2 * float(np.abs(want).max()))
    assert np.array_equal(outs[0]["r1"], want)  # frame 0 ran the latency variant whole


def test_unknown_pinned_variant_is_one_line(bundle):
    with pytest.raises(InputError, match="variant 'turbo' is not in this bundle .*; give one of them"):
        _load(bundle, variant="turbo")


def test_simulate_replays_signals(bundle, tmp_path):
    (tmp_path / "s.jsonl").write_text('{"gpu_busy": 0}\n{"gpu_busy": 99}\n')
    result = subprocess.run(
        [sys.executable, "-m", "ragc.cli", "simulate", bundle, "--signals", tmp_path / "s.jsonl", "--json"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert [r["variant"] for r in json.loads(result.stdout)] == ["latency", "no-gpu"]


@pytest.mark.parametrize(
    "edit, problem",
    [
        (lambda m: m["rule"]["rows"][0].update(variant="gone"), "names variant 'gone', which the bundle does not hold"),
        (lambda m: m.update(rule=[1, 2]), "rule: it is missing or not a JSON object"),
        (lambda m: m["variants"]["no-gpu"].update(schedule="../x.json"), "points outside the bundle"),
    ],
)
def test_a_hostile_adaptive_bundle_is_one_line(bundle, tmp_path, edit, problem):
    copy = shutil.copytree(bundle, tmp_path / "b")
    edit_json(copy, "manifest.json", lambda m: (edit(m), m)[1])
    with pytest.raises(BundleError, match=problem):
        _load(copy)
    result = subprocess.run([sys.executable, "-m", "ragc.cli", "run", copy], capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_ragc_run_and_validate_take_an_adaptive_bundle(bundle, model):
    for args in (["run", bundle], ["validate", bundle, "--model", model]):
        result = subprocess.run(
            [sys.executable, "-m", "ragc.cli", *args],
            capture_output=True,
            text=True,
            env=os.environ | {"RAGC_NPU": "sim"},
        )
        assert result.returncode == 0, result.stderr
