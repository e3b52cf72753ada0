"""Bundles: byte-identical compiles, relocatable, and every kind of tampering refused on load."""

import json
import shutil

import numpy as np
import pytest
from models import conv_bn_relu_model, save

import runtime_min
from ragc.errors import UsageError
from ragc.pipeline import compile_model


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return save(conv_bn_relu_model(), tmp_path_factory.mktemp("m") / "m.onnx")


def _tree(path):
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_same_model_gives_byte_identical_bundle(model_path, tmp_path):
    compile_model(model_path, tmp_path / "a", cut_before=["conv2"], devices="cpu")
    compile_model(model_path, tmp_path / "b", cut_before=["conv2"], devices="cpu")
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")


def test_bundle_is_relocatable(model_path, tmp_path):
    compile_model(model_path, tmp_path / "a", devices="cpu")
    shutil.move(tmp_path / "a", tmp_path / "moved")
    x = np.ones((1, 3, 16, 16), np.float32)
    assert runtime_min.load(tmp_path / "moved").run({"x": x})["y"].shape == (1, 10)


def test_manifest_lists_every_file_with_its_hash(model_path, tmp_path):
    compile_model(model_path, tmp_path / "a", devices="cpu")
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    on_disk = {p.name for p in (tmp_path / "a").iterdir()} - {"manifest.json"}
    assert set(manifest["files"]) == on_disk
    assert manifest["format_version"] == runtime_min.FORMAT_VERSION and len(manifest["model_sha256"]) == 64
    assert manifest["inputs"] == [{"name": "x", "dtype": "float32", "shape": [1, 3, 16, 16]}]


def test_recompiling_over_a_bundle_replaces_it(model_path, tmp_path):
    compile_model(model_path, tmp_path / "a", cut_before=["conv2"], devices="cpu")
    compile_model(model_path, tmp_path / "a", devices="cpu")
    assert len(json.loads((tmp_path / "a" / "schedule.json").read_text())["partitions"]) == 1


def test_refuses_to_overwrite_a_foreign_directory(model_path, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(UsageError, match="not a ragc bundle"):
        compile_model(model_path, tmp_path / "mine", devices="cpu")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


@pytest.fixture
def bundle(model_path, tmp_path):
    return compile_model(model_path, tmp_path / "plan", devices="cpu").bundle


def test_tampered_file_is_refused(bundle):
    onnx_file = next(bundle.glob("*.onnx"))
    data = bytearray(onnx_file.read_bytes())
    data[-1] ^= 1
    onnx_file.write_bytes(bytes(data))
    with pytest.raises(runtime_min.BundleError, match="does not match its sha256"):
        runtime_min.load(bundle)


def test_missing_file_is_refused(bundle):
    next(bundle.glob("*.onnx")).unlink()
    with pytest.raises(runtime_min.BundleError, match="is missing"):
        runtime_min.load(bundle)


def test_newer_format_is_refused(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["format_version"] = 99
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(runtime_min.BundleError, match="newer than this runtime"):
        runtime_min.load(bundle)


def test_path_leaving_the_bundle_is_refused(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["../escape.onnx"] = "0" * 64
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(runtime_min.BundleError, match="outside the bundle"):
        runtime_min.load(bundle)


def test_corrupt_manifest_is_refused(bundle):
    (bundle / "manifest.json").write_text("{not json")
    with pytest.raises(runtime_min.BundleError, match="not readable JSON"):
        runtime_min.load(bundle)


def test_not_a_bundle(tmp_path):
    with pytest.raises(runtime_min.BundleError, match="not a ragc bundle"):
        runtime_min.load(tmp_path)
