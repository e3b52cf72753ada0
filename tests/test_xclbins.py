"""`ragc inspect --xclbins`: the NPU kernels a plan references, how to build them, and whether they are installed
where runtime_min looks (<root>/<device>/<design>/<file> on RAGC_XCLBIN_PATH)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from executor_plans import three_processor_plan

from ragc.cli import main


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    return three_processor_plan(tmp_path_factory.mktemp("xclbins") / "three")


def report(plan, **env):
    result = CliRunner(env={"RAGC_XCLBIN_PATH": None, **env}).invoke(
        main, ["inspect", str(plan), "--xclbins", "--json"]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_references_are_listed_with_their_build(plan):
    data = report(plan)
    assert data["xclbin_path"] == [] and data["xclbins"]
    for x in data["xclbins"]:
        assert x["device"] == "npu2" and x["xclbin"].endswith(".xclbin") and x["found"] is None
        assert x["make"].startswith("make devicename=npu2") and all(i["file"] and i["dims"] for i in x["insts"])
    text = CliRunner(env={"RAGC_XCLBIN_PATH": None}).invoke(main, ["inspect", str(plan), "--xclbins"]).output
    assert "0 of" in text and "docs/npu-xclbins.md" in text and "missing" in text


def test_installed_kernels_are_found_on_the_path(plan, tmp_path):
    wanted = report(plan)["xclbins"]
    empty, root = tmp_path / "empty", tmp_path / "root"
    empty.mkdir()
    for x in wanted:
        folder = root / x["device"] / x["design"]
        folder.mkdir(parents=True, exist_ok=True)
        for name in [x["xclbin"], *(i["file"] for i in x["insts"])]:
            (folder / name).write_bytes(b"stand-in")
    data = report(plan, RAGC_XCLBIN_PATH=f"{empty}:{root}")
    assert all(x["found"] == str(root / x["device"] / x["design"]) for x in data["xclbins"])
    first = wanted[0]
    (root / first["device"] / first["design"] / first["insts"][0]["file"]).unlink()  # one file short: not found
    assert report(plan, RAGC_XCLBIN_PATH=str(root))["xclbins"][0]["found"] is None


def test_a_plan_without_an_npu_references_nothing(tmp_path):
    from hostile_fixtures import TARGET
    from models import conv_bn_relu_model, save

    from ragc.pipeline import compile_model

    bundle = compile_model(
        save(conv_bn_relu_model(), tmp_path / "m.onnx"), tmp_path / "p", devices="cpu", target=TARGET
    )
    assert report(bundle.bundle)["xclbins"] == []
