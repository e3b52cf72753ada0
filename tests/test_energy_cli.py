"""Energy in the bundle and on the command line: `compile --objective energy [--max-latency-ms]`, `simulate
--json`, `inspect`; and one-line refusals of bad energy options."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from ragc.cli import main

TINYNET = Path(__file__).parents[1] / "examples" / "tinynet.onnx"
TARGET = "ryzen-ai-9-hx-370"


def _compile(tmp_path: Path, *args: str) -> Path:
    plan = tmp_path / "plan"
    result = CliRunner().invoke(main, ["compile", str(TINYNET), "-o", str(plan), "--target", TARGET, *args])
    assert result.exit_code == 0, result.output
    return plan


def test_simulate_json_has_the_stable_keys(tmp_path):
    plan = _compile(tmp_path, "--place", "Gemm=npu")
    result = CliRunner().invoke(main, ["simulate", str(plan), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {"predicted_ms", "energy_mj", "partitions"}
    assert data["energy_mj"] > 0 and data["predicted_ms"] > 0
    for p in data["partitions"]:
        assert set(p) == {"id", "device", "start_ms", "finish_ms", "energy_mj"} and p["finish_ms"] >= p["start_ms"]
    assert {"cpu", "npu"} <= {p["device"] for p in data["partitions"]}
    assert sum(p["energy_mj"] for p in data["partitions"]) <= data["energy_mj"] + 1e-9  # plus the idle share
    manifest = json.loads((plan / "manifest.json").read_text())
    assert set(manifest["baselines_energy_mj"]) == set(manifest["baselines_ms"])
    text = CliRunner().invoke(main, ["simulate", str(plan)]).output
    assert "mJ per request" in text and "simulated" in text
    assert "energy mJ" in CliRunner().invoke(main, ["inspect", str(plan)]).output


def test_energy_objective_meets_its_cap_and_spends_no_more_than_latency(tmp_path):
    latency = json.loads((_compile(tmp_path / "l") / "manifest.json").read_text())
    cap = 2 * latency["predicted_ms"]
    energy = json.loads(
        (_compile(tmp_path / "e", "--objective", "energy", "--max-latency-ms", str(cap)) / "manifest.json").read_text()
    )
    assert energy["solver"] == "energy" and energy["predicted_ms"] <= cap * (1 + 1e-6)
    assert energy["energy_mj"] <= latency["energy_mj"] + 1e-6


def test_bad_energy_options_are_one_line(tmp_path):
    runner = CliRunner()
    out = tmp_path / "x"
    result = runner.invoke(main, ["compile", str(TINYNET), "-o", str(out), "--target", TARGET, "--max-latency-ms", "1"])
    assert result.exit_code == 2 and "goes with --objective energy" in result.output
    args = ["compile", str(TINYNET), "-o", str(out), "--target", TARGET, "--objective", "energy"]
    result = runner.invoke(main, [*args, "--max-latency-ms", "0.000001"])
    assert result.exit_code == 1 and "no plan meets --max-latency-ms" in result.output
    assert len(result.output.strip().splitlines()) == 1
