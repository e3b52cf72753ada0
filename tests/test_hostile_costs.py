"""Hostile costs.json and explain arguments: a bundle is untrusted input, so every edit to costs.json (hashes made
to match again) is one error line naming the file and the field; bad paths and values are one line too."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from hostile_fixtures import TARGET, copy_plan, edit_json, rehash
from models import conv_bn_relu_model, save

from ragc.cli import main
from ragc.pipeline import compile_model


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    folder = tmp_path_factory.mktemp("costs")
    model = save(conv_bn_relu_model(), folder / "m.onnx")
    return compile_model(model, folder / "plan", target=TARGET, devices="cpu,gpu").bundle


def cli(*args):
    return CliRunner().invoke(main, [*map(str, args)])


def one_line(result, pattern, code=1):
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.stderr
    assert pattern in lines[0], lines[0]


def _unit(doc, k=0):
    return doc["units"][k]


EDITS = {
    "version": (lambda d: d | {"version": 2}, "'version' = 2 is outside"),
    "objective": (lambda d: d | {"objective": "fast"}, "'objective' = 'fast' is not one of"),
    "no ops": (lambda d: {k: v for k, v in d.items() if k != "ops"}, "'ops' is missing"),
    "ops a string": (lambda d: d | {"ops": "conv1"}, "'ops' is str, not list"),
    "negative ms": (lambda d: d | {"placement_ms": -1}, "is not a non-negative number"),
    "bool bytes": (lambda d: [u.update(mem_bytes=True) for u in d["units"]] and d, "'mem_bytes' is bool"),
    "unknown device": (lambda d: d | {"devices": ["cpu", "tpu"]}, "is not a list of distinct"),
    "device twice": (lambda d: d | {"devices": ["cpu", "cpu"]}, "is not a list of distinct"),
    "unit on tpu": (lambda d: [_unit(d).update(device="tpu")] and d, "'device' = 'tpu' is not one of"),
    "cost per device": (lambda d: [_unit(d)["cost_ms"].pop("gpu")] and d, "one entry per processor"),
    "unit twice": (lambda d: d | {"units": d["units"] + d["units"][:1]}, "listed twice"),
    "op not in a unit": (lambda d: [_unit(d)["ops"].pop()] and d, "the units' ops are not the ops"),
    "reads a stranger": (lambda d: [d["ops"][1]["reads"].append("nobody")] and d, "reads an op that is not"),
    "backwards edge": (lambda d: d | {"edges": [[d["units"][-1]["name"], d["units"][0]["name"], 4]]}, "earlier unit"),
    "edge shape": (lambda d: d | {"edges": [["a", "b"]]}, "is not [source unit, destination unit, bytes]"),
    "edge bytes": (lambda d: d | {"edges": [[d["units"][0]["name"], d["units"][1]["name"], -5]]}, "'bytes' = -5"),
    "missing link": (lambda d: [d["transfers"].pop("gpu->cpu")] and d, "'gpu->cpu' is missing"),
    "capacity device": (lambda d: d | {"capacity_bytes": {"dsp": 1}}, "is not one of"),
    "power": (lambda d: d | {"power": {"cpu": [1, 2, 3], "gpu": [1, 2]}}, "is not [active W, idle W]"),
    "stages": (lambda d: d | {"stages": [[d["units"][0]["name"]]]}, "'stages' do not hold every unit"),
    "reason": (lambda d: [d["ops"][0]["unsupported"].update(npu=7)] and d, "'npu' is int, not str"),
    "forced": (lambda d: [d["ops"][0].update(forced="tpu")] and d, "'forced' = 'tpu' is not one of"),
    "not an object": (lambda d: [d], "not a JSON object"),
}


@pytest.mark.parametrize("case", sorted(EDITS))
def test_a_tampered_costs_file_is_one_line(plan, tmp_path, case):
    edit, pattern = EDITS[case]
    bundle = copy_plan(plan, tmp_path / "b")
    edit_json(bundle, "costs.json", edit)
    result = cli("explain", bundle)
    one_line(result, pattern)
    assert "costs.json" in result.stderr and "recompile the model" in result.stderr


def test_costs_that_are_not_json_or_missing(plan, tmp_path):
    bundle = copy_plan(plan, tmp_path / "b")
    (bundle / "costs.json").write_text("{" * 100_000)
    rehash(bundle)
    one_line(cli("explain", bundle), "costs.json in")
    (bundle / "costs.json").unlink()
    one_line(cli("explain", bundle), "bundle file 'costs.json' is missing")


def test_an_older_bundle_without_costs_says_to_recompile(plan, tmp_path):
    bundle = copy_plan(plan, tmp_path / "b")
    (bundle / "costs.json").unlink()
    manifest = json.loads((bundle / "manifest.json").read_text())
    del manifest["files"]["costs.json"]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    one_line(cli("explain", bundle), "has no costs.json (compiled by an older ragc")
    assert cli("run", bundle, "--repeat", 1).exit_code == 0  # the runtime never needed it


@pytest.mark.parametrize(
    ("args", "pattern", "code"),
    [
        (["--time-limit", "nan"], "is not a finite number above 0", 2),
        (["--time-limit", "0"], "is not a finite number above 0", 2),
        (["--time-limit", "inf"], "is not a finite number above 0", 2),
        (["--target", TARGET], "--target goes with a MODEL", 2),
        (["--shape", "x=1x3x16x16"], "--shape goes with a MODEL", 2),
    ],
)
def test_bad_explain_options(plan, args, pattern, code):
    result = cli("explain", plan, *args)
    assert result.exit_code == code and pattern in result.output, result.output


def test_bad_explain_paths(plan, tmp_path):
    one_line(cli("explain", tmp_path / "nothing"), "does not exist; give a plan folder", code=2)
    (tmp_path / "notes.txt").write_text("not a model")
    one_line(cli("explain", tmp_path / "notes.txt"), "notes.txt")
    (tmp_path / "empty").mkdir()
    one_line(cli("explain", tmp_path / "empty"), "is not a ragc bundle")
    one_line(cli("explain", plan, "--svg", tmp_path / "no" / "g.svg"), "does not exist; create it first", code=2)
    one_line(cli("explain", plan, "--svg", tmp_path), "is a directory", code=2)
