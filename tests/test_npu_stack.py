"""What `ragc profile --show` reports of the XDNA NPU stack, and what `ragc explain` says about the NPU."""

from __future__ import annotations

import sys
from pathlib import Path

from click.testing import CliRunner

from ragc.cli import main
from ragc.profiler import npu_stack

FAKE_DIR = Path(__file__).parent / "fake_pyxrt"
TINYNET = Path(__file__).parents[1] / "examples" / "tinynet.onnx"


def test_kernel_version_gate():
    assert npu_stack.kernel_finding("6.14.0-15-generic").found
    assert npu_stack.kernel_finding("7.1.0").found
    old = npu_stack.kernel_finding("6.8.0-51-generic")
    assert not old.found and "needs Linux 6.14+" in old.detail


def test_driver_nodes_and_firmware(tmp_path):
    assert not npu_stack.module_finding(tmp_path / "none").found
    module = tmp_path / "amdxdna"
    module.mkdir()
    (module / "version").write_text("2.21.0\n")
    assert npu_stack.module_finding(module).detail == "2.21.0"
    accel = tmp_path / "accel"
    accel.mkdir()
    assert not npu_stack.accel_finding(accel).found
    (accel / "accel0").touch()
    assert npu_stack.accel_finding(accel).detail.endswith("accel0")
    firmware = tmp_path / "amdnpu" / "17f0_10"
    firmware.mkdir(parents=True)
    assert not npu_stack.firmware_finding((tmp_path / "amdnpu",)).found
    (firmware / "npu.sbin").touch()
    assert npu_stack.firmware_finding((tmp_path / "amdnpu",)).found


def test_pyxrt_with_and_without_user_pointer_bos(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyxrt", None)
    assert not npu_stack.pyxrt_finding().found
    monkeypatch.delitem(sys.modules, "pyxrt")
    monkeypatch.syspath_prepend(str(FAKE_DIR))
    import pyxrt

    pyxrt.reset()
    assert "user-pointer bos" in npu_stack.pyxrt_finding().detail
    pyxrt.configure(user_pointers=False)
    assert "no pyxrt.ext.bo" in npu_stack.pyxrt_finding().detail
    pyxrt.reset()


def test_profile_show_reports_the_stack():
    result = CliRunner().invoke(main, ["profile", "--show", "--target", "ryzen-ai-9-hx-370"])
    assert result.exit_code == 0 and "NPU stack on this machine" in result.output
    assert all(part in result.output for part in ("kernel", "amdxdna", "/dev/accel", "firmware", "XRT", "pyxrt"))


def test_explain_says_why_the_npu_is_or_is_not_in_the_plan():
    result = CliRunner().invoke(main, ["explain", str(TINYNET), "--target", "ryzen-ai-9-hx-370"])
    assert result.exit_code == 0, result.output
    assert "npu first" in result.output and "context switches" in result.output
    assert "the NPU is not in the plan" in result.output or "the NPU is in the plan" in result.output
