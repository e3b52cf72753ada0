"""`ragc run` as a benchmark and `ragc validate` as an honest check: statistics, the prediction labelled with its
chip, streams per stage, where every partition ran (fallbacks named), per-processor tolerances, --strict, JSON;
hostile values are one line."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from executor_plans import three_processor_plan
from hostile_fixtures import TARGET
from models import conv_bn_relu_model, save

from ragc.cli import main
from ragc.cli.compare import Tolerances, computed_on
from ragc.cli.run_report import latency_stats
from ragc.pipeline import compile_model

NO_NPU = {"RAGC_NPU": None, "RAGC_XCLBIN_PATH": None}  # the xrt backend cannot start here: the NPU falls back


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    three = three_processor_plan(folder / "three")
    model = save(conv_bn_relu_model(), folder / "m.onnx")
    stream = compile_model(
        model, folder / "stream", target=TARGET, devices="cpu,gpu", objective="throughput", place=["conv2=gpu"]
    ).bundle
    return {"three": three, "model": folder / "three" / "m.onnx", "stream": stream}


def cli(*args):
    return CliRunner(env=NO_NPU).invoke(main, [*map(str, args)])


def test_latency_statistics():
    stats = latency_stats([0.001, 0.002, 0.003, 0.004])
    assert stats["min"] == pytest.approx(1.0) and stats["max"] == pytest.approx(4.0)
    assert stats["median"] == pytest.approx(2.5) and stats["mean"] == pytest.approx(2.5)
    assert stats["min"] <= stats["p90"] <= stats["p99"] <= stats["max"]
    assert stats["runs_per_s"] == pytest.approx(400.0)


def test_run_reports_statistics_and_labels_the_prediction(plans):
    result = cli("run", plans["three"], "--npu", "sim", "--repeat", 5, "--warmup", 2)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "median latency over 5 run(s)" in out and "after 2 warm-up" in out and "runs/s" in out
    for figure in ("min", "mean", "p90", "p99", "max"):
        assert f"{figure} " in out
    assert "predicted latency" in out and "for ryzen-ai-9-hx-370" in out and "this chip:" in out
    assert "npu (simulator on the host)" in out


def test_run_json_for_a_time_budget(plans):
    result = cli("run", plans["three"], "--seconds", "0.3", "--json", "--warmup", 0)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["runs"] >= 1 and set(data["latency_ms"]) == {"min", "median", "mean", "p90", "p99", "max", "runs_per_s"}
    assert data["prediction"]["for_chip"] == f"target-{TARGET}" and not data["prediction"]["same_chip"]
    npu = next(p for p in data["partitions"] if p["planned_on"] == "npu")
    assert npu["ran_on"] == "cpu" and npu["fallback"] == data["fallbacks"]["npu"]  # no NPU here (or no xclbins)
    assert result.stderr.count("warning:") == 1 and "Traceback" not in result.stderr


def test_a_stream_reports_frames_per_second_and_stages(plans):
    result = cli("run", plans["stream"], "--stream", 20, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["stream"]["frames"] == 20 and data["stream"]["frames_per_s"] > 0
    assert len(data["stages"]) >= 2 and all(s["measured_ms"] > 0 for s in data["stages"])
    assert data["prediction"]["kind"] == "slowest stage"
    text = cli("run", plans["stream"], "--stream", 5).stdout
    assert "frames/s" in text and "pipeline stages" in text and "predicted slowest pipeline stage" in text
    assert "--stream N" in cli("run", plans["stream"], "--repeat", 2).stdout  # a throughput plan run one by one


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["--repeat", "3", "--seconds", "1"], "give --repeat or --seconds, not both"),
        (["--stream", "3", "--repeat", "2"], "leave out --repeat and --seconds"),
        (["--seconds", "nan"], "not a finite number above 0"),
        (["--seconds", "-1"], "not a finite number above 0"),
        (["--seconds", "inf"], "not a finite number above 0"),
        (["--warmup", "-1"], "--warmup"),
        (["--repeat", "0"], "--repeat"),
    ],
)
def test_bad_run_options_are_one_usage_line(plans, args, pattern):
    result = cli("run", plans["three"], *args)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and pattern in lines[0]


def test_validate_names_where_each_partition_ran(plans):
    result = cli("validate", plans["three"], "--model", plans["model"])
    assert result.exit_code == 0, result.output
    assert "(planned on npu): ran on its CPU fallback (" in result.stdout and "PASS" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("warning: npu not validated") and "--strict" in warnings[0]
    strict = cli("validate", plans["three"], "--model", plans["model"], "--strict")
    assert strict.exit_code == 1 and "FAIL (--strict): npu fell back" in strict.stdout


def test_validate_the_simulated_npu_at_its_tolerance(plans):
    result = cli("validate", plans["three"], "--model", plans["model"], "--npu", "sim", "--strict", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["passed"] and not data["fell_back"] and data["npu"] == "sim"
    (output,) = data["outputs"]
    assert output["computed_on"] == ["cpu", "gpu", "npu"] and output["rtol"] == 2e-2
    tight = cli("validate", plans["three"], "--model", plans["model"], "--npu", "sim", "--npu-rtol", 0, "--npu-atol", 0)
    assert tight.exit_code == 1 and "MISMATCH" in tight.stdout


def test_tolerances_follow_the_processors_that_computed_an_output():
    schedule = {
        "partitions": [
            {"id": "p0", "device": "gpu", "inputs": [{"name": "x"}], "outputs": [{"name": "a"}]},
            {"id": "p1", "device": "npu", "inputs": [{"name": "a"}], "outputs": [{"name": "b"}]},
            {"id": "p2", "device": "cpu", "inputs": [{"name": "a"}], "outputs": [{"name": "c"}]},
        ],
        "outputs": [{"name": "b"}, {"name": "c"}, {"name": "x"}],
    }
    assert computed_on(schedule, {}) == {"b": {"gpu", "npu"}, "c": {"gpu", "cpu"}, "x": set()}
    assert computed_on(schedule, {"p1": "cpu"})["b"] == {"gpu", "cpu"}  # a fallback is held to fp32
    import numpy as np

    tol = Tolerances()
    assert tol.of({"cpu", "gpu"}, np.ones(3)) == (1e-4, 1e-5)
    assert tol.of({"npu"}, np.array([2.0, -8.0, np.inf])) == (2e-2, pytest.approx(8e-2))


@pytest.mark.parametrize("flag", ["--rtol", "--atol", "--npu-rtol", "--npu-atol"])
@pytest.mark.parametrize("value", ["-1", "nan", "inf", "x"])
def test_bad_tolerances_are_one_usage_line(plans, flag, value):
    result = cli("validate", plans["three"], "--model", plans["model"], flag, value)
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and flag in result.stderr
