"""`ragc explain`: per op its predicted ms on every processor and why it is not on the others, from a plan's
costs.json or a model placed in memory; what --place rules cost; JSON; the graph picture."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner
from executor_plans import three_processor_plan
from hostile_fixtures import TARGET
from models import conv_bn_relu_model, save

from ragc.bundle.costs import COSTS, read_costs
from ragc.cli import main
from ragc.cli.explain_ops import explain_ops
from ragc.pipeline import compile_model
from runtime_min.manifest import read_bundle

CODES = {"unsupported", "forced", "not-compiled", "fused-with", "fused-into", "slower", "not-slower", "does-not-fit"}


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    folder = tmp_path_factory.mktemp("explain")
    model = save(conv_bn_relu_model(), folder / "m.onnx")
    auto = compile_model(model, folder / "auto", target=TARGET).bundle
    gpu = compile_model(model, folder / "gpu", devices="gpu", target=TARGET).bundle
    return {"model": model, "auto": auto, "gpu": gpu, "three": three_processor_plan(folder / "three")}


def explain(*args):
    result = CliRunner().invoke(main, ["explain", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result.output


def test_the_bundle_lists_a_checked_costs_file(plans):
    bundle = read_bundle(plans["auto"])
    assert COSTS in bundle.manifest["files"]
    doc = read_costs(bundle)
    assert {op["name"] for op in doc["ops"]} == {op for p in bundle.schedule["partitions"] for op in p["ops"]}


def test_every_op_has_a_reason_for_every_other_processor(plans):
    e = explain_ops(read_costs(read_bundle(plans["auto"])))
    assert e["moves"]["count"] > 0
    for row in e["ops"]:
        assert set(row["predicted_ms"]) == {"cpu", "gpu", "npu"}
        assert set(row["others"]) == {"cpu", "gpu", "npu"} - {row["chosen"]}
        assert all(why["why"] in CODES and why["detail"] for why in row["others"].values())
    moved = [w for row in e["ops"] for w in row["others"].values() if w["why"] in ("slower", "not-slower")]
    assert moved and all(w["plan"] == pytest.approx(e["chosen"] + w["delta"]) for w in moved)
    assert all(w["delta"] >= -1e-6 and w["proven"] for w in moved)  # the plan is optimal: moving never helps
    gap = next(row for row in e["ops"] if row["name"] == "gap")
    assert gap["others"]["npu"]["why"] == "unsupported" and "no NPU kernel" in gap["others"]["npu"]["detail"]
    relu = next(row for row in e["ops"] if row["name"] == "relu1")
    assert relu["fused_into"] == "conv1" and all(
        w["why"] in ("fused-into", "unsupported") for w in relu["others"].values()
    )


def test_a_processor_left_out_by_devices_is_named(plans):
    e = explain_ops(read_costs(read_bundle(plans["gpu"])), moves=False)
    conv = next(row for row in e["ops"] if row["name"] == "conv1")
    assert conv["chosen"] == "gpu" and conv["others"]["npu"]["why"] == "not-compiled"
    assert conv["others"]["cpu"]["why"] == "not-compiled" and "the CPU takes only" in conv["others"]["cpu"]["detail"]


def test_forced_plans_say_what_the_rules_cost(plans):
    e = explain_ops(read_costs(read_bundle(plans["three"])))
    fc = next(row for row in e["ops"] if row["name"] == "fc")
    assert fc["forced"] == "npu" and fc["others"]["cpu"]["why"] == "forced"
    assert e["unforced_ms"] < e["chosen"]
    text = explain(plans["three"])
    assert "--place rules force" in text and "x slower" in text and "for chip ryzen-ai-9-hx-370" in text


def test_text_and_json_agree(plans):
    text = explain(plans["auto"])
    data = json.loads(explain(plans["auto"], "--json"))
    assert data["source"] == "plan" and len(data["ops"]) == 7 and data["npu"]["ops"] == 7
    for row in data["ops"]:
        assert row["name"] in text
    assert "why each of the 7 ops runs where it does" in text and "if moved" in text


def test_a_model_is_explained_with_its_npu_analysis(plans):
    text = explain(plans["model"], "--target", TARGET)
    assert "npu first" in text and "why each of the 7 ops" in text and "the NPU is" in text
    data = json.loads(explain(plans["model"], "--target", TARGET, "--json", "--no-moves"))
    assert data["source"] == "model" and data["model_analysis"]["npu"]["verdict"].startswith("the NPU is")
    assert data["moves"] is None and all(w["why"] != "slower" for r in data["ops"] for w in r["others"].values())


def test_the_graph_picture_colours_ops_by_processor(plans, tmp_path):
    svg = tmp_path / "graph.svg"
    explain(plans["three"], "--svg", svg, "-q")
    root = ET.parse(svg).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    titles = [t.text for t in root.iter(f"{ns}title")]
    assert any(t.startswith("fc (Gemm) on npu") for t in titles)
    assert any(t.startswith("gap (GlobalAveragePool) on cpu") for t in titles)
    assert sum("transfer" in t for t in titles) >= 2  # gpu -> cpu and cpu -> npu
    fills = {r.get("fill") for r in root.iter(f"{ns}rect")}
    assert {"#4e79a7", "#59a14f", "#e15759"} <= fills
