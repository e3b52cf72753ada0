"""Hostile bundles: a bundle is untrusted input, and sha256s are rewritten to match every edit here, so nothing but
the runtime's own checks stands between the edit and a run. Each case must end in one BundleError line naming the
problem (or, for edits that keep the bundle valid, a correct run); never a crash, a hang, or a read outside."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hostile_fixtures import compile_plans, copy_plan, edit_json, image, one_line_error, program_of, ragc, rehash

import runtime_min
from runtime_min.errors import BundleError

pytestmark = pytest.mark.filterwarnings("ignore::runtime_min.RuntimeMinWarning")


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    return compile_plans(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def wants(plans):
    return {kind: runtime_min.load(path, npu="sim").run(image()) for kind, path in plans.items()}


def _set(path: list, value):
    """An edit that sets the value at `path` (keys and list indices) of a JSON document."""

    def edit(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return doc

    return edit


def _delete(path: list):
    def edit(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
        return doc

    return edit


def _each(fn):
    """An edit applied to every partition entry of schedule.json."""

    def edit(doc):
        for part in doc["partitions"]:
            fn(part)
        return doc

    return edit


MANIFEST_CASES = [
    ("format-version-string", _set(["format_version"], "2"), "format_version '2' is not a whole number"),
    ("format-version-float", _set(["format_version"], 2.0), "format_version 2.0 is not a whole number"),
    ("format-version-bool", _set(["format_version"], True), "format_version True is not a whole number"),
    ("format-version-newer", _set(["format_version"], 99), "newer than this runtime reads"),
    ("format-version-older", _set(["format_version"], 1), "older than this runtime reads"),
    ("format-version-negative", _set(["format_version"], -3), "older than this runtime reads"),
    ("format-missing", _delete(["format"]), "not a ragc bundle manifest"),
    ("format-other", _set(["format"], "tflite"), "not a ragc bundle manifest"),
    ("files-missing", _delete(["files"]), "'files' is missing"),
    ("files-list", _set(["files"], ["schedule.json"]), "'files' is list"),
    ("no-schedule", _delete(["files", "schedule.json"]), "lists no schedule.json"),
    ("hash-short", _set(["files", "schedule.json"], "abc"), "not 64 hex digits"),
    ("hash-int", _set(["files", "schedule.json"], 7), "not 64 hex digits"),
    ("file-parent", _set(["files", "../escape.onnx"], "0" * 64), "points outside the bundle"),
    ("file-absolute", _set(["files", "/etc/passwd"], "0" * 64), "points outside the bundle"),
    ("file-inner-parent", _set(["files", "a/../../b"], "0" * 64), "points outside the bundle"),
    ("file-dot", _set(["files", "./schedule.json"], "0" * 64), "not a plain relative path|points outside"),
    ("file-empty", _set(["files", ""], "0" * 64), "not a plain relative path"),
    ("file-backslash", _set(["files", "..\\x"], "0" * 64), "not a plain relative path"),
    ("file-nul", _set(["files", "a\u0000b"], "0" * 64), "not a plain relative path"),
    ("file-double-slash", _set(["files", "a//b"], "0" * 64), "points outside the bundle"),
    ("file-missing", _set(["files", "ghost.onnx"], "0" * 64), "'ghost.onnx' is missing"),
]


@pytest.mark.parametrize(("case", "edit", "message"), MANIFEST_CASES, ids=[c[0] for c in MANIFEST_CASES])
def test_manifest_edits(plans, tmp_path, case, edit, message):
    bundle = copy_plan(plans["cpu"], tmp_path / "b")
    path = bundle / "manifest.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))  # the manifest holds the hashes: no rehash
    with pytest.raises(BundleError, match=message):
        runtime_min.load(bundle)


SCHEDULE_CASES = [
    ("version-missing", _delete(["schedule_version"]), "'schedule_version' is missing"),
    ("version-old", _set(["schedule_version"], 1), "'schedule_version' = 1 is outside"),
    ("partitions-dict", _set(["partitions"], {}), "'partitions' is dict"),
    ("partition-no-id", _each(lambda p: p.pop("id")), "'id' is missing"),
    ("partition-id-int", _each(lambda p: p.update(id=3)), "'id' is int"),
    ("partition-bad-device", _each(lambda p: p.update(device="dsp")), "'device' = 'dsp' is not one of"),
    ("partition-no-artifact", _each(lambda p: p.pop("artifact")), "'artifact' is missing"),
    ("partition-artifact-format", _each(lambda p: p["artifact"].update(format="tflite")), "'format' = 'tflite'"),
    ("partition-unlisted-file", _each(lambda p: p["artifact"].update(model="other.onnx")), "manifest does not list"),
    ("partition-model-path", _each(lambda p: p["artifact"].update(model="../m.onnx")), "points outside the bundle"),
    ("partition-model-absolute", _each(lambda p: p["artifact"].update(model="/tmp/m.onnx")), "points outside"),
    ("partition-files-str", _each(lambda p: p["artifact"].update(files="p0.cpu.onnx")), "'files' is str"),
    ("partition-ops-str", _each(lambda p: p.update(ops="conv")), "'ops' is str"),
    ("partition-inputs-dict", _each(lambda p: p.update(inputs={})), "'inputs' is dict"),
    ("partition-input-no-name", _each(lambda p: p["inputs"][0].pop("name")), "'name' is missing"),
    ("partition-input-dtype", _each(lambda p: p["inputs"][0].update(dtype="complex128")), "'dtype' = 'complex128'"),
    ("partition-input-shape-neg", _each(lambda p: p["inputs"][0].update(shape=[-1, 3])), "is not a shape"),
    ("partition-input-shape-huge", _each(lambda p: p["inputs"][0].update(shape=[2**40, 2**40])), "is not a shape"),
    ("partition-input-shape-str", _each(lambda p: p["inputs"][0].update(shape="1x3")), "'shape' is str"),
    ("partition-predicted-nan", _each(lambda p: p.update(predicted_ms="fast")), "not a non-negative number"),
    ("duplicate-ids", lambda d: d | {"partitions": d["partitions"] + d["partitions"][:1]}, "share an id"),
    ("steps-unknown-processor", _set(["steps", "tpu"], []), "processor 'tpu'"),
    ("steps-list", _set(["steps"], []), "'steps' is list"),
    (
        "steps-missing-partition",
        lambda d: d | {"steps": {"cpu": d["steps"]["cpu"][:1]}},
        "every partition exactly once",
    ),
    ("steps-twice", lambda d: d | {"steps": {"cpu": d["steps"]["cpu"] * 2}}, "every partition exactly once"),
    ("steps-reversed", lambda d: d | {"steps": {"cpu": d["steps"]["cpu"][::-1]}}, "runs before"),
    ("steps-unknown-wait", _set(["steps", "cpu", 0, "waits"], ["p9"]), "unknown partition p9"),
    ("steps-waits-str", _set(["steps", "cpu", 0, "waits"], "p1"), "'waits' is str"),
    ("steps-wrong-processor", lambda d: d | {"steps": {"gpu": d["steps"]["cpu"]}}, "another processor"),
    ("output-unwritten", _set(["outputs", 0, "name"], "nobody-writes-this"), "written by no partition"),
    ("output-twice", lambda d: d | {"outputs": d["outputs"] * 2}, "listed twice"),
    (
        "input-read-unwritten",
        _each(lambda p: p["inputs"][0].update(name="ghost")),
        "reads 'ghost', which is written by no",
    ),
    (
        "tensor-written-twice",
        _each(lambda p: p.update(outputs=[{"name": "x", "dtype": "float32", "shape": [1]}])),
        "written twice",
    ),
    ("constants-str", _set(["constants"], "none"), "'constants' is str"),
    (
        "constant-out-of-store",
        _set(["constants", "y"], {"offset": 2**39, "dtype": "float32", "shape": [1]}),
        "written twice|outside tensors.bin",
    ),
]


@pytest.mark.parametrize(("case", "edit", "message"), SCHEDULE_CASES, ids=[c[0] for c in SCHEDULE_CASES])
def test_schedule_edits(plans, tmp_path, case, edit, message):
    bundle = copy_plan(plans["cpu"], tmp_path / "b")
    edit_json(bundle, "schedule.json", edit)
    with pytest.raises(BundleError, match=message):
        runtime_min.load(bundle).run(image())


def _tensor(name: str, **fields):
    def edit(program):
        program["tensors"][name].update(fields)
        return program

    return edit


def _first_weight(program):
    return next(n for n, t in program["tensors"].items() if t["region"] == "weights")


def _weight_edit(**fields):
    def edit(program):
        program["tensors"][_first_weight(program)].update(fields)
        return program

    return edit


def _dispatch(**fields):
    def edit(program):
        program["dispatches"][0].update(fields)
        return program

    return edit


GPU_CASES = [
    ("version", _set(["version"], 1), "'version' = 1 is outside"),
    ("arena-negative", _set(["arena_bytes"], -1), "'arena_bytes' = -1"),
    ("arena-too-small", _set(["arena_bytes"], 256), "outside its arena region"),
    ("weights-too-small", _set(["weights_bytes"], 0), "outside its weights region"),
    ("tensor-offset-huge", _tensor("x", offset=2**38), "outside its arena region"),
    ("tensor-offset-unaligned", _tensor("x", offset=4), "unaligned"),
    ("tensor-nbytes-wrong", _tensor("x", nbytes=12), "is not the size of"),
    ("tensor-dtype-wrong", _tensor("x", dtype="int8", nbytes=768), "inputs and outputs are not the partition's"),
    ("tensor-region-other", _tensor("x", region="host"), "'region' = 'host'"),
    ("weight-store-offset-huge", _weight_edit(store_offset=2**39), "outside tensors.bin"),
    ("weight-store-offset-neg", _weight_edit(store_offset=-64), "'store_offset' = -64"),
    (
        "weight-no-store-offset",
        lambda p: (p["tensors"][_first_weight(p)].pop("store_offset"), p)[1],
        "'store_offset' is missing",
    ),
    ("dispatch-unknown-binding", _dispatch(bindings=["ghost"]), "binds unknown tensor 'ghost'"),
    ("dispatch-no-binding", _dispatch(bindings=[]), "binds nothing"),
    (
        "dispatch-fewer-bindings",
        lambda p: (p["dispatches"][0].update(bindings=p["dispatches"][0]["bindings"][:1]), p)[1],
        "reads more buffers",
    ),
    ("dispatch-groups-zero", _dispatch(groups=[0, 1, 1]), "three positive counts"),
    ("dispatch-groups-two", _dispatch(groups=[1, 1]), "three positive counts"),
    ("dispatch-groups-huge", _dispatch(groups=[2**31, 1, 1]), "launches more"),
    ("dispatch-kernel-unlisted", _dispatch(kernel="other.spv"), "not one of the partition's files"),
    ("dispatch-kernel-path", _dispatch(kernel="../x.spv"), "not one of the partition's files"),
    ("inputs-renamed", _set(["inputs"], ["y"]), "inputs and outputs are not the partition's"),
    ("output-is-input", lambda p: p | {"outputs": p["inputs"]}, "not the partition's|both an input"),
]


@pytest.mark.parametrize(("case", "edit", "message"), GPU_CASES, ids=[c[0] for c in GPU_CASES])
def test_gpu_program_edits(plans, tmp_path, case, edit, message):
    pytest.importorskip("vulkan")
    bundle = copy_plan(plans["gpu"], tmp_path / "b")
    edit_json(bundle, program_of(bundle, "gpu"), edit)
    try:
        plan = runtime_min.load(bundle)
    except BundleError as exc:
        assert len(str(exc).splitlines()) == 1
        assert __import__("re").search(message, str(exc)), str(exc)
        return
    pytest.fail(f"loaded ({plan.fallbacks or 'the GPU ran it'}) instead of refusing")


def _spirv_edit(bundle, data: bytes):
    program = json.loads((bundle / program_of(bundle, "gpu")).read_text())
    (bundle / program["dispatches"][0]["kernel"]).write_bytes(data)
    rehash(bundle)


@pytest.mark.parametrize(
    ("case", "data", "message"),
    [
        ("empty", b"", "not SPIR-V"),
        ("text", b"#version 450\nvoid main(){}\n", "not SPIR-V"),
        ("truncated", None, "truncated SPIR-V"),
        ("odd-length", b"\x03\x02\x23\x07" + b"\0" * 17, "not SPIR-V"),
    ],
)
def test_kernel_files_that_are_not_spirv(plans, tmp_path, case, data, message):
    pytest.importorskip("vulkan")
    bundle = copy_plan(plans["gpu"], tmp_path / "b")
    if data is None:
        kernel = json.loads((bundle / program_of(bundle, "gpu")).read_text())["dispatches"][0]["kernel"]
        code = (bundle / kernel).read_bytes()
        data = code[:20] + (0xFFFF0000 | 17).to_bytes(4, "little") + code[24:40]
    _spirv_edit(bundle, data)
    with pytest.raises(BundleError, match=message):
        runtime_min.load(bundle)


NPU_CASES = [
    ("device", _set(["device"], "npu9"), "'device' = 'npu9'"),
    ("weights-str", _set(["weights"], "all"), "'weights' is str"),
    ("launch-missing", _delete(["launch"]), "'launch' is missing"),
    (
        "weight-offset-huge",
        lambda p: (next(iter(p["weights"].values())).update(offset=2**39), p)[1],
        "outside tensors.bin",
    ),
    ("weight-shape-bad", lambda p: (next(iter(p["weights"].values())).update(shape=[-4]), p)[1], "is not a shape"),
    ("steps-str", _set(["steps"], "go"), "'steps' is str"),
]


@pytest.mark.parametrize(("case", "edit", "message"), NPU_CASES, ids=[c[0] for c in NPU_CASES])
def test_npu_program_edits(plans, tmp_path, case, edit, message):
    bundle = copy_plan(plans["three"], tmp_path / "b")
    edit_json(bundle, program_of(bundle, "npu"), edit)
    with pytest.raises(BundleError, match=message):
        runtime_min.load(bundle, npu="sim", disable=("gpu",))


def test_a_symlink_leaving_the_bundle_is_refused(plans, tmp_path):
    bundle = copy_plan(plans["cpu"], tmp_path / "b")
    outside = tmp_path / "outside.onnx"
    onnx_file = next(bundle.glob("p0.cpu.onnx"))
    outside.write_bytes(onnx_file.read_bytes())
    onnx_file.unlink()
    onnx_file.symlink_to(outside)
    with pytest.raises(BundleError, match="resolves outside the bundle"):
        runtime_min.load(bundle)


def test_a_symlinked_tensor_store_is_refused(plans, tmp_path):
    bundle = copy_plan(plans["cpu"], tmp_path / "b")
    os.replace(bundle / "tensors.bin", tmp_path / "tensors.bin")
    (bundle / "tensors.bin").symlink_to(tmp_path / "tensors.bin")
    with pytest.raises(BundleError, match="resolves outside the bundle"):
        runtime_min.load(bundle)


def test_an_onnx_partition_reading_external_data_outside_is_refused(plans, tmp_path):
    import onnx

    bundle = copy_plan(plans["cpu"], tmp_path / "b")
    path = bundle / "p1.cpu.onnx"  # conv2's weights are big enough to live in the tensor store
    model = onnx.load(str(path), load_external_data=False)
    init = next(i for i in model.graph.initializer if i.data_location == onnx.TensorProto.EXTERNAL)
    next(e for e in init.external_data if e.key == "location").value = "../../../etc/hostname"
    path.write_bytes(model.SerializeToString())
    rehash(bundle)
    with pytest.raises(BundleError, match="onnxruntime refuses p1.cpu.onnx"):
        runtime_min.load(bundle)


def test_an_onnx_partition_that_is_not_onnx(plans, tmp_path):
    bundle = copy_plan(plans["cpu"], tmp_path / "b")
    (bundle / "p0.cpu.onnx").write_bytes(b"not a model")
    rehash(bundle)
    with pytest.raises(BundleError, match="onnxruntime refuses"):
        runtime_min.load(bundle)


def test_an_onnx_partition_with_other_inputs_than_the_schedule(plans, tmp_path):
    bundle = copy_plan(plans["cpu"], tmp_path / "b")
    (bundle / "p0.cpu.onnx").write_bytes((bundle / "p1.cpu.onnx").read_bytes())
    rehash(bundle)
    with pytest.raises(BundleError, match="differs from schedule.json"):
        runtime_min.load(bundle)


def test_a_truncated_tensor_store(plans, tmp_path):
    bundle = copy_plan(plans["gpu"], tmp_path / "b")
    data = (bundle / "tensors.bin").read_bytes()
    (bundle / "tensors.bin").write_bytes(data[: len(data) // 2])
    rehash(bundle)
    with pytest.raises(BundleError, match="outside tensors.bin|onnxruntime refuses"):
        runtime_min.load(bundle)


@pytest.mark.parametrize("junk", ["[]", "null", '"text"', "7", "{", "\xff\xfe", "[" * 100000])
def test_manifests_that_are_not_json_objects(plans, tmp_path, junk):
    bundle = copy_plan(plans["cpu"], tmp_path / "b")
    (bundle / "manifest.json").write_bytes(junk.encode("latin-1"))
    with pytest.raises(BundleError, match="not readable JSON|not a JSON object"):
        runtime_min.load(bundle)


def test_edits_that_keep_a_bundle_valid_still_run_correctly(plans, wants, tmp_path):
    bundle = copy_plan(plans["cpu"], tmp_path / "b")
    edit_json(bundle, "schedule.json", _each(lambda p: p.update(predicted_ms=123.0)))
    got = runtime_min.load(bundle).run(image())
    assert all(np.array_equal(got[k], wants["cpu"][k]) for k in got)


def test_cli_reports_a_tampered_bundle_in_one_line(plans, tmp_path):
    bundle = copy_plan(plans["cpu"], tmp_path / "b")
    edit_json(bundle, "schedule.json", _set(["outputs", 0, "name"], "ghost"))
    one_line_error(ragc("run", bundle), "written by no partition")
    one_line_error(ragc("inspect", bundle), "written by no partition")
