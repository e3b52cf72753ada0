"""Smoke test of the benchmark harness: one small model, two runs, every output file; no timing assertions."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import measure, models, report, run, systems, tables  # noqa: E402


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    argv = [
        "--models",
        "tinynet",
        "--systems",
        "ragc-cpu,iree-llvm-cpu",
        "--runs",
        "2",
        "--warmup",
        "1",
        "--no-torch",
        "--out",
        str(out),
        "--profile-timeout",
        "170",
    ]
    assert run.main(argv) == 0
    return out


def test_run_writes_results_for_every_system(results_dir: Path) -> None:
    results = json.loads((results_dir / "results.json").read_text())
    assert results["config"]["runs"] == 2 and results["environment"]["cpu"]["model"]
    (model,) = results["models"]
    assert model["name"] == "tinynet" and model["path"] == "examples/tinynet.onnx"
    by_system = model["systems"]
    assert set(by_system) == {"ort-cpu", "ragc-cpu", "iree-llvm-cpu"}
    ort = by_system["ort-cpu"]
    assert ort["status"] == "ok" and ort["runs"] == 2 and ort["max_abs_err"] == 0.0
    assert ort["p10_ms"] <= ort["median_ms"] <= ort["p90_ms"] and ort["peak_rss_mb"] > 0
    ragc = by_system["ragc-cpu"]
    assert ragc["status"] == "ok", ragc.get("note")
    assert ragc["agrees"] and ragc["compile_s"] > 0 and ragc["partitions"][0]["device"] == "cpu"
    assert by_system["iree-llvm-cpu"]["status"] in ("ok", "skipped")
    assert model["summary"]["best_peer"] in ("ort-cpu", "iree-llvm-cpu")


def test_markdown_table_and_report(results_dir: Path, tmp_path: Path) -> None:
    table = (results_dir / "results.md").read_text()
    assert "| model | ragc cpu | ORT CPU |" in table and "| tinynet |" in table
    out = tmp_path / "benchmarks.md"
    assert report.main([str(results_dir / "results.json"), "-o", str(out)]) == 0
    page = out.read_text()
    for heading in ("## Machine", "## Command", "## Median latency (ms)", "## All measurements"):
        assert heading in page
    assert "--models tinynet" in page


def test_report_explains_a_loss() -> None:
    auto = {
        "status": "ok",
        "kind": "ragc",
        "median_ms": 2.0,
        "predicted_ms": 1.0,
        "partition_times": [{"id": "p0", "ran_on": "gpu", "ops": ["a", "b"], "measured_ms": 1.5}],
        "costliest": {
            "partition": "p0",
            "device": "gpu",
            "measured_ms": 1.5,
            "top_ops": [{"name": "a", "op_type": "Conv", "ms": 0.4}],
            "op_types_cpu_ms": [{"op_type": "Conv", "ms": 0.4}],
        },
    }
    by_system = {"ragc-auto": auto, "ort-cpu": {"status": "ok", "kind": "peer", "median_ms": 1.0}}
    summary = tables.summarize(by_system)
    assert summary["best_peer"] == "ort-cpu" and summary["auto_vs_best_peer"] == 2.0
    assert summary["predicted_over_measured"] == {"ragc-auto": 0.5}
    text = report._losses({"models": [{"name": "m", "systems": by_system, "summary": summary}]})
    assert "2.00x ORT CPU" in text and "p0 gpu 2 ops" in text and "a (Conv)" in text


def test_time_runs_counts_runs_and_caps_slow_ones() -> None:
    calls = []
    timing = measure.time_runs(lambda: calls.append(1), runs=4, warmup=2, cap_s=60)
    assert len(timing.times_ms) == 4 and len(calls) == 6 and timing.note is None
    slow = measure.time_runs(lambda: calls.append(1), runs=50, warmup=5, cap_s=0.0)
    assert len(slow.times_ms) == 1 and slow.warmup == 1 and "instead of 50" in slow.note


def test_bad_names_are_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="choose from"):
        models.select(models.model_set(with_torch=False), "nosuchmodel")
    with pytest.raises(ValueError, match="choose from .*ragc-auto"):
        systems.select("ragc-fast")
    assert run.main(["--models", "nosuchmodel", "--no-torch"]) == 2


def test_model_set_and_input_specs() -> None:
    names = [m.name for m in models.model_set(with_torch=True)]
    assert names[:4] == ["resnet18", "mobilenet_v2", "efficientnet_b0", "tinynet"] and "squeezenet" in names
    (spec,) = models.input_specs(models.ROOT / "examples" / "tinynet.onnx")
    assert spec.dtype == "float32" and spec.shape == (1, 3, 96, 96)


@pytest.mark.skipif(models.torch_available() is not None, reason="needs torch and torchvision")
def test_torchvision_export(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.onnx"
    models.export_torchvision("resnet18", path)
    assert models.input_specs(path)[0].shape == (1, 3, 224, 224)
