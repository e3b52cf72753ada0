"""Hostile use of `-o` and `--output-dir`: ragc never deletes or overwrites what it did not write, and every refusal
is one line naming the problem and the fix."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hostile_fixtures import TARGET, one_line_error, ragc
from models import conv_bn_relu_model, save

from ragc.errors import UsageError
from ragc.pipeline import compile_model
from runtime_min.format import MANIFEST


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save(conv_bn_relu_model(), tmp_path_factory.mktemp("m") / "m.onnx")


def _compile(model, out):
    return compile_model(model, out, devices="cpu", target=TARGET)


def _tree(path):
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_a_folder_with_a_foreign_manifest_json_is_left_alone(model, tmp_path):
    site = tmp_path / "webapp"
    site.mkdir()
    (site / MANIFEST).write_text(json.dumps({"name": "my app", "icons": []}))
    (site / "index.html").write_text("<html></html>")
    before = _tree(site)
    with pytest.raises(UsageError, match="not a ragc bundle"):
        _compile(model, site)
    assert _tree(site) == before


def test_a_manifest_naming_the_format_but_listing_nothing_is_not_trusted(model, tmp_path):
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / MANIFEST).write_text(json.dumps({"format": "ragc-bundle", "files": {}}))
    (fake / "thesis.tex").write_text("years of work")
    with pytest.raises(UsageError, match="also holds 'thesis.tex', which ragc did not write"):
        _compile(model, fake)
    assert (fake / "thesis.tex").read_text() == "years of work"


def test_a_manifest_listing_a_users_file_does_not_choose_it_for_deletion(model, tmp_path):
    out = _compile(model, tmp_path / "plan").bundle
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["files"]["../notes.txt"] = "0" * 64  # a manifest is never trusted to choose what gets deleted
    (out / MANIFEST).write_text(json.dumps(manifest))
    (tmp_path / "notes.txt").write_text("mine")
    _compile(model, out)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_recompiling_over_an_old_bundle_keeps_a_users_extra_file(model, tmp_path):
    out = _compile(model, tmp_path / "plan").bundle
    (out / "model.onnx").write_bytes(b"the only copy")
    with pytest.raises(UsageError, match="also holds 'model.onnx'"):
        _compile(model, out)
    assert (out / "model.onnx").read_bytes() == b"the only copy"


def test_recompiling_over_an_old_bundle_with_a_subfolder_is_refused(model, tmp_path):
    out = _compile(model, tmp_path / "plan").bundle
    (out / "data").mkdir()
    with pytest.raises(UsageError, match="also holds 'data'"):
        _compile(model, out)
    assert (out / "data").is_dir()


def test_the_model_being_compiled_inside_the_target_is_refused(tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    model = save(conv_bn_relu_model(), folder / "model.onnx")
    with pytest.raises(UsageError, match="holds the model being compiled"):
        _compile(model, folder)
    assert (folder / "model.onnx").is_file()


def test_the_models_own_path_as_target_is_refused(model):
    with pytest.raises(UsageError, match="exists and is a file|holds the model"):
        _compile(model, model)


def test_a_target_under_a_regular_file(model, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="which is a file"):
        _compile(model, tmp_path / "file" / "plan")


def test_a_target_that_is_a_file(model, tmp_path):
    (tmp_path / "plan").write_text("x")
    with pytest.raises(UsageError, match="exists and is a file"):
        _compile(model, tmp_path / "plan")
    assert (tmp_path / "plan").read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_an_unwritable_place(model, tmp_path):
    (tmp_path / "ro").mkdir(mode=0o555)
    with pytest.raises(UsageError, match="choose a writable -o"):
        _compile(model, tmp_path / "ro" / "plan")


def test_an_unwritable_place_from_the_cli(model):
    result = ragc("compile", model, "-o", "/proc/ragc-plan", "--devices", "cpu", "--target", TARGET)
    one_line_error(result, "-o")


def test_a_symlink_to_a_folder_is_refused(model, tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "keep.txt").write_text("keep")
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(UsageError, match="symbolic link"):
        _compile(model, tmp_path / "link")
    assert (real / "keep.txt").read_text() == "keep"


def test_an_empty_folder_becomes_the_bundle(model, tmp_path):
    (tmp_path / "empty").mkdir()
    assert (_compile(model, tmp_path / "empty").bundle / MANIFEST).is_file()


def test_a_failed_compile_leaves_the_old_bundle_as_it_was(model, tmp_path):
    out = _compile(model, tmp_path / "plan").bundle
    before = _tree(out)
    with pytest.raises(UsageError):
        compile_model(model, out, devices="cpu", target=TARGET, cut_before=["no-such-node"])
    assert _tree(out) == before


def test_no_staging_folders_are_left_behind(model, tmp_path):
    _compile(model, tmp_path / "plan")
    _compile(model, tmp_path / "plan")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan"]


def test_refusals_on_the_cli_are_one_line(model, tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("x")
    one_line_error(ragc("compile", model, "-o", tmp_path / "site", "--target", TARGET), "not a ragc bundle")


def test_output_names_that_would_collide_get_distinct_files(tmp_path):
    from ragc.cli.paths import output_file_name

    names = ["a/b", "a_b", "a%2Fb", "..", ".", "", "x y", "Ω", ".hidden", "a.b"]
    files = [output_file_name(n) for n in names]
    assert len(set(files)) == len(files)
    assert all("/" not in f and not f.startswith(".") for f in files)


def test_run_output_dir_writes_every_output(model, tmp_path):
    plan = _compile(model, tmp_path / "plan").bundle
    result = ragc("run", plan, "--output-dir", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert np.load(tmp_path / "out" / "y.npy").shape == (1, 10)
