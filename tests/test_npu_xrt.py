"""The pyxrt backend's call sequence, checked against tests/fake_pyxrt (a recording stand-in, not XRT), and its
clear refusals when pyxrt, the device or an xclbin is missing."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from npu_fixtures import assert_close_bf16, make_model, run_ort, to_ir, write_bundle
from onnx import helper

from ragc.targets import load_target
from runtime_min.backends.npu_sim import NpuSimBackend
from runtime_min.backends.npu_xrt import NpuXrtBackend, read_instructions
from runtime_min.errors import BackendUnavailable, DeviceFailure
from runtime_min.format import round_bf16
from runtime_min.options import LoadOptions

FAKE_DIR = Path(__file__).parent / "fake_pyxrt"
RNG = np.random.default_rng(5)
INSTS = ["06030100", "00000105", "00000003", "00000068"]  # instruction words as aiecc writes insts.txt; the
# stand-in reads the first as the runtime parameter that picks the op of a family xclbin, so tests replace it


@pytest.fixture
def fake(monkeypatch):
    """The stand-in importable as `pyxrt`, with a clean record."""
    monkeypatch.syspath_prepend(str(FAKE_DIR))
    monkeypatch.delitem(sys.modules, "pyxrt", raising=False)
    import pyxrt

    pyxrt.reset()
    yield pyxrt
    pyxrt.reset()


def _conv_relu_matmul():
    w, b, m = (RNG.standard_normal(s).astype(np.float32) for s in ((4, 3, 3, 3), (4,), (6, 10)))
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "m"], ["y"], name="mm"),
    ]
    return make_model(nodes, {"x": (1, 3, 6, 6)}, {"w": w, "b": b, "m": m}, ["y"])


MODEL = _conv_relu_matmul()


def _install(fake, partition, bundle, root: Path) -> None:
    """Put stand-in xclbins and instruction files where RAGC_XCLBIN_PATH finds each referenced kernel: one xclbin
    per family build, one mode per instruction file (its first word)."""
    program = bundle.read_json(partition.artifact.main, "test")
    modes: dict[Path, dict[str, dict]] = {}
    for step in program["steps"]:
        if "kernel" not in step:
            continue
        ref = step["kernel"]
        folder = root / ref["device"] / ref["design"]
        folder.mkdir(parents=True, exist_ok=True)
        table = modes.setdefault(folder / ref["xclbin"], {})
        key = f"{len(modes) * 256 + len(table):08x}"
        args = [a for a in ref["arguments"] if "dtype" in a]
        roles = [a["role"] for a in args]
        epilogue = [[e["kind"], roles.index(e["input"]) if "input" in e else -1] for e in ref.get("epilogue", [])]
        table[key] = {"kind": ref["kernel"], "buffers": args, "epilogue": epilogue}
        (folder / ref["insts"]).write_text("\n".join([key, *INSTS[1:]]) + "\n")
    for path, table in modes.items():
        fake.write_xclbin(str(path), table)


@pytest.fixture
def plan(fake, tmp_path):
    """A conv -> relu -> matmul NPU partition with its kernels installed; (partition, bundle dir, xclbin root)."""
    folder, root = tmp_path / "plan", tmp_path / "xclbins"
    folder.mkdir()
    partition, bundle = write_bundle(to_ir(MODEL), folder)
    _install(fake, partition, bundle, root)
    return partition, bundle, root


def test_runs_the_documented_call_sequence(fake, plan):
    fake.configure(user_pointers=False)  # an XRT without pyxrt.ext: host_only bos, written and read by copy
    partition, bundle, root = plan
    backend = NpuXrtBackend.open(LoadOptions(xclbin_path=(str(root),)))
    executable = backend.prepare(partition, bundle)
    x = RNG.standard_normal((1, 3, 6, 6)).astype(np.float32)
    out = executable.run({"x": x})["y"]

    assert_close_bf16(out, run_ort(MODEL, {"x": x})["y"])
    sim = NpuSimBackend.open(LoadOptions()).prepare(partition, bundle).run({"x": x})["y"]
    np.testing.assert_allclose(out, sim, rtol=1e-2, atol=1e-2 * float(np.abs(sim).max()))

    names = [name for name, _ in fake.CALLS]
    assert names[:5] == ["device", "xclbin", "register_xclbin", "hw_context", "kernel"]
    calls = [d for n, d in fake.CALLS if n == "kernel.call"]
    assert [(c["opcode"], c["count"], c["n_bos"]) for c in calls] == [(3, 4, 4), (3, 4, 3)]  # A,B,bias,C / A,B,C
    assert names.count("run.wait") == 2
    assert names.count("hw_context") == 1  # conv (+bias, relu epilogue) and matmul share the GEMM xclbin
    instr_bos = [d for n, d in fake.CALLS if n == "bo" and d["flags"] == "cacheable"]
    assert instr_bos == [{"size": 4 * len(INSTS), "flags": "cacheable", "group": 1}] * 2
    data_bos = [d["group"] for n, d in fake.CALLS if n == "bo" and d["flags"] == "host_only"]
    assert data_bos == [3, 4, 5, 6, 3, 4, 5]
    reads = [(i, d["group"]) for i, (n, d) in enumerate(fake.CALLS) if n == "bo.read"]
    assert len(reads) == 2 and all(
        fake.CALLS[i - 1] == ("bo.sync", {"group": g, "direction": "XCL_BO_SYNC_BO_FROM_DEVICE"}) for i, g in reads
    )
    assert len(executable.timings()) == 2 and not any(t.simulated for t in executable.timings())


def test_user_pointer_bos_share_the_host_buffers(fake, plan):
    partition, bundle, root = plan
    executable = NpuXrtBackend.open(LoadOptions(xclbin_path=(str(root),))).prepare(partition, bundle)
    x = RNG.standard_normal((1, 3, 6, 6)).astype(np.float32)
    out = executable.run({"x": x})["y"]
    assert_close_bf16(out, run_ort(MODEL, {"x": x})["y"])
    names = [name for name, _ in fake.CALLS]
    assert names.count("ext.bo") == 4 + 3 and "bo.read" not in names
    assert sum(n == "bo" and d["flags"] == "host_only" for n, d in fake.CALLS) == 0
    assert sum(n == "bo.write" for n in names) == 2  # the two instruction streams; data goes straight to host memory
    stats = executable.copy_stats()
    assert stats.copies == 0 and stats.avoided == 2 + 2  # per step: one input written in place, one output read
    again = executable.run({"x": x})["y"]
    assert np.array_equal(again, out) and not np.shares_memory(again, out)


def test_weights_upload_once_and_inputs_every_run(fake, plan):
    fake.configure(user_pointers=False)
    partition, bundle, root = plan
    executable = NpuXrtBackend.open(LoadOptions(xclbin_path=(str(root),))).prepare(partition, bundle)
    setup_writes = sum(n == "bo.write" for n, _ in fake.CALLS)
    assert setup_writes == 2 + 3  # two instruction streams; conv weights and bias, matmul weights
    x = RNG.standard_normal((1, 3, 6, 6)).astype(np.float32)
    executable.run({"x": x})
    assert sum(n == "bo.write" for n, _ in fake.CALLS) - setup_writes == 2  # conv A, matmul A


def test_hardware_context_is_shared_per_xclbin(fake, tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="r1"), helper.make_node("Relu", ["a"], ["y"], name="r2")]
    folder, root = tmp_path / "plan", tmp_path / "x"
    folder.mkdir()
    partition, bundle = write_bundle(to_ir(make_model(nodes, {"x": (5, 7)}, {}, ["y"])), folder)
    _install(fake, partition, bundle, root)
    executable = NpuXrtBackend.open(LoadOptions(xclbin_path=(str(root),))).prepare(partition, bundle)
    x = RNG.standard_normal((5, 7)).astype(np.float32)
    np.testing.assert_array_equal(executable.run({"x": x})["y"], round_bf16(np.maximum(x, 0)))
    assert sum(n == "hw_context" for n, _ in fake.CALLS) == 1
    assert sum(n == "kernel.call" for n, _ in fake.CALLS) == 2


def test_too_many_xclbins_for_the_array(fake, tmp_path, monkeypatch):
    """Each family build is one xclbin (one hardware context): relu and sigmoid share the eltwise one."""
    scale = np.ones(5, np.float32)
    nodes = [
        helper.make_node("Relu", ["t0"], ["t1"], name="n1"),
        helper.make_node("Softmax", ["t1"], ["t2"], name="n2", axis=-1),
        helper.make_node("Sigmoid", ["t2"], ["t3"], name="n3"),
        helper.make_node("LayerNormalization", ["t3", "g"], ["t4"], name="n4", axis=-1),
        helper.make_node("RMSNormalization", ["t4", "g"], ["y"], name="n5", axis=-1),
    ]
    folder, root = tmp_path / "plan", tmp_path / "x"
    folder.mkdir()
    model = make_model(nodes, {"t0": (4, 5)}, {"g": scale}, ["y"])
    partition, bundle = write_bundle(to_ir(model), folder, target_npu=load_target("ryzen-7-7840u")["npu"])
    _install(fake, partition, bundle, root)
    monkeypatch.setenv("RAGC_XCLBIN_PATH", str(root))
    NpuXrtBackend.open(LoadOptions.make({})).prepare(partition, bundle)  # 4 xclbins fit the 6 contexts of npu
    monkeypatch.setattr("runtime_min.backends.npu_xrt.MAX_HW_CONTEXTS", {"npu": 3})
    with pytest.raises(BackendUnavailable, match="needs 4 xclbins but npu holds 3"):
        NpuXrtBackend.open(LoadOptions.make({})).prepare(partition, bundle)


def test_missing_xclbin_names_the_file_and_how_to_build_it(fake, plan, tmp_path):
    partition, bundle, _ = plan
    backend = NpuXrtBackend.open(LoadOptions(xclbin_path=(str(tmp_path / "empty"),)))
    with pytest.raises(
        BackendUnavailable,
        match=r"npu2/basic/matrix_multiplication/whole_array/final_gemm_bf16_bf16_\d+x\d+x\d+_\dc.xclbin"
        r" \(\+ insts_matmul_\d+x\d+x\d+_bias-relu.txt\).*make .*dtype_in=bf16.*n_aie_cols=",
    ):
        backend.prepare(partition, bundle)


def test_missing_pyxrt_is_backend_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyxrt", None)  # import pyxrt raises ImportError
    with pytest.raises(BackendUnavailable, match=r"pyxrt not importable .*npu='sim'"):
        NpuXrtBackend.open(LoadOptions.make({}))


def test_no_device_is_backend_unavailable(fake):
    fake.configure(no_device=True)
    with pytest.raises(BackendUnavailable, match="no XDNA NPU device"):
        NpuXrtBackend.open(LoadOptions.make({}))


def test_failed_run_is_a_device_failure(fake, plan):
    partition, bundle, root = plan
    executable = NpuXrtBackend.open(LoadOptions(xclbin_path=(str(root),))).prepare(partition, bundle)
    fake.configure(wait_state=fake.ert_cmd_state.ERT_CMD_STATE_ERROR)
    with pytest.raises(DeviceFailure, match="conv ended in state"):
        executable.run({"x": np.zeros((1, 3, 6, 6), np.float32)})


def test_instruction_files_in_both_mlir_aie_formats(tmp_path):
    words = np.array([int(w, 16) for w in INSTS], np.uint32)
    (tmp_path / "insts.txt").write_text("\n".join(INSTS) + "\n")
    words.astype("<u4").tofile(tmp_path / "insts.bin")
    assert np.array_equal(read_instructions(tmp_path / "insts.txt"), words)
    assert np.array_equal(read_instructions(tmp_path / "insts.bin"), words)
