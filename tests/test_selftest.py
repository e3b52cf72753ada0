"""`ragc selftest`: the conformance suites on every processor here (the NPU simulated, and labelled so), a report
without personal data, the NPU timings path through the recording pyxrt stand-in, and `--compare`."""

from __future__ import annotations

import getpass
import json
import socket
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from ragc.cli import main
from ragc.cli.selftest import NPU_KERNELS, _bar, npu_measured
from ragc.cli.selftest_compare import comparison_rows, guess_target
from ragc.pipeline import compile_model
from ragc.profiler import workloads
from ragc.targets import load_target
from runtime_min.manifest import read_bundle

FAKE_DIR = Path(__file__).parent / "fake_pyxrt"


def test_selftest_writes_a_shareable_report(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyxrt", None)  # no XRT here (other tests leave the stand-in imported)
    report = tmp_path / "report.json"
    result = CliRunner().invoke(main, ["selftest", "--skip-profile", "--report", str(report), "--budget", "300"])
    assert result.exit_code == 0, result.output
    text = report.read_text()
    data = json.loads(text)
    assert data["processors"]["npu"] == "sim" and {"cpu", "npu"} <= set(data["processors"])
    npu = [r for r in data["conformance"] if r["processor"] == "npu"]
    assert npu and all(r["simulated"] and r["status"] == "pass" for r in npu)
    assert all(r["status"] == "pass" for r in data["conformance"])
    assert {f["part"] for f in data["machine"]["npu_stack"]} >= {"kernel", "/dev/accel", "pyxrt"}
    for personal in (str(Path.home()), socket.gethostname(), getpass.getuser()):
        assert len(personal) < 4 or personal not in text  # (short names also occur inside words)


def test_npu_timings_go_through_pyxrt(tmp_path, monkeypatch):
    """The measured-NPU path, against the recording stand-in: the xclbins it needs installed, then timed."""
    from test_npu_xrt import _install

    monkeypatch.syspath_prepend(str(FAKE_DIR))
    monkeypatch.delitem(sys.modules, "pyxrt", raising=False)
    import pyxrt

    pyxrt.reset()
    root = tmp_path / "xclbins"
    for size in NPU_KERNELS:  # the same compile selftest makes, to learn the references it needs
        path = workloads.save(workloads.gemm(size, "bf16"), tmp_path / f"g{size}.onnx")
        compile_model(path, tmp_path / f"p{size}", target="ryzen-ai-9-hx-370", devices="npu")
        bundle = read_bundle(tmp_path / f"p{size}")
        _install(pyxrt, next(p for p in bundle.partitions if p.device == "npu"), bundle, root)
    monkeypatch.setenv("RAGC_XCLBIN_PATH", str(root))
    with _bar(Console(file=open("/dev/null", "w"))) as bar:  # noqa: SIM115
        rows = npu_measured(tmp_path, "ryzen-ai-9-hx-370", bar, repeat=2)
    assert [r["kernel"] for r in rows] == [f"gemm bf16 {s}^3" for s in NPU_KERNELS]
    assert all(r["predicted_ms"] > 0 and r["measured_ms"] > 0 for r in rows)
    assert sum(name == "kernel.call" for name, _ in pyxrt.CALLS) == 3 * len(NPU_KERNELS)
    monkeypatch.setenv("RAGC_XCLBIN_PATH", str(tmp_path / "nothing-built"))
    with _bar(Console(file=open("/dev/null", "w"))) as bar:  # noqa: SIM115
        missing = npu_measured(tmp_path, "ryzen-ai-9-hx-370", bar, repeat=1)
    assert all(r["measured_ms"] is None and "not found on RAGC_XCLBIN_PATH" in r["note"] for r in missing)


def test_compare_flags_figures_the_measurement_contradicts(tmp_path):
    target = load_target("ryzen-ai-9-hx-370")
    report = {
        "machine": {"cpu": {"model": "AMD Ryzen AI 9 HX 370 w/ Radeon 890M"}},
        "profile": {"cpu": {"peak_gflops": 2 * target["devices"]["cpu"]["peak_gflops"], "dispatch_ms": 0.03}},
        "npu_measured": [{"kernel": "gemm bf16 1024^3", "predicted_ms": 0.2, "measured_ms": 0.21}],
        "conformance": [{"suite": "x", "processor": "npu", "status": "pass", "simulated": False}],
    }
    assert guess_target(report) == "ryzen-ai-9-hx-370"
    rows = {name: measured / expected for name, expected, measured in comparison_rows(report, target)}
    assert rows["devices.cpu.peak_gflops"] == pytest.approx(2.0) and rows["npu kernel gemm bf16 1024^3"] < 1.33
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    result = CliRunner().invoke(main, ["selftest", "--compare", str(path)])
    assert result.exit_code == 0 and "devices.cpu.peak_gflops" in result.output and "2.00" in result.output
    path.write_text(json.dumps({**report, "machine": {"cpu": {"model": "some other cpu"}}}))
    result = CliRunner().invoke(main, ["selftest", "--compare", str(path)])
    assert result.exit_code == 2 and "give --target NAME" in result.output
