"""`ragc devices`: what this machine offers and lacks, each with a reason; it works without Vulkan or an NPU."""

from __future__ import annotations

import json
import sys

from click.testing import CliRunner

from ragc.cli import devices_probe, main
from runtime_min.format import FORMAT_VERSION


def test_devices_json_says_what_is_here_and_why_not():
    result = CliRunner().invoke(main, ["devices", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["cpu"]["available"] and data["cpu"]["used_provider"] == "CPUExecutionProvider"
    assert data["npu"]["simulator"] and [f["part"] for f in data["npu"]["stack"]][:2] == ["kernel", "amdxdna"]
    assert data["npu"]["available"] or data["npu"]["reason"]
    gpu = data["gpu"]
    assert gpu["available"] or gpu["reason"]
    for device in gpu["devices"]:
        assert isinstance(device["software"], bool) and "shaderInt64" in device["features"]
        assert "float_controls" in device and isinstance(device["missing"], list)
    assert sum(d["picked"] for d in gpu["devices"]) <= 1
    assert data["versions"]["bundle_format"] == FORMAT_VERSION and data["personality"]["chip_id"]


def test_devices_text_flags_software_gpus():
    result = CliRunner().invoke(main, ["devices"])
    assert result.exit_code == 0 and "processors on this machine" in result.output
    data = devices_probe.vulkan_report()
    if any(d["software"] for d in data["devices"]):
        assert "software: correct, not fast" in result.output


def test_no_vulkan_is_a_reason_not_an_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vulkan", None)
    report = devices_probe.vulkan_report()
    assert not report["available"] and "pip install vulkan" in report["reason"] and report["devices"] == []
