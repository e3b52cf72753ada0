"""Hostile inputs: feeds, model files, external data, shapes, CLI arguments and odd graphs. Every mistake is one
line naming the problem and the fix; no silently wrong answer (byte order, NaN), no traceback, nothing modified."""

from __future__ import annotations

import threading

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hostile_fixtures import TARGET, one_line_error, ragc
from models import _model, conv_bn_relu_model, save, two_input_model
from onnx import TensorProto, helper

import runtime_min
from ragc.errors import ModelError, ShapeError, UsageError
from ragc.frontend import load_model, parse_shapes
from ragc.pipeline import compile_model
from runtime_min.errors import InputError, RuntimeMinError


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    folder = tmp_path_factory.mktemp("two")
    model = save(two_input_model(), folder / "m.onnx")
    return model, compile_model(model, folder / "plan", devices="cpu", target=TARGET).bundle


def _feeds(seed=0):
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal((2, 5)).astype(np.float32) for n in ("x", "y")}


def _reference(model, feeds):
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return dict(zip(["a", "b"], session.run(["a", "b"], feeds), strict=True))


# --- feeds ----------------------------------------------------------------------------------------------------------


def test_big_endian_feeds_give_the_right_answer(two):
    model, bundle = two
    feeds = _feeds()
    swapped = {k: v.astype(">f4") for k, v in feeds.items()}
    got = runtime_min.load(bundle).run(swapped)
    want = _reference(model, feeds)
    assert all(np.array_equal(got[k], want[k]) for k in want)


def test_non_contiguous_feeds_give_the_right_answer(two):
    model, bundle = two
    feeds = {k: np.asfortranarray(v) for k, v in _feeds(1).items()}
    got = runtime_min.load(bundle).run({"x": feeds["x"], "y": feeds["y"][:, ::1]})
    want = _reference(model, {k: np.ascontiguousarray(v) for k, v in feeds.items()})
    assert all(np.array_equal(got[k], want[k]) for k in want)


def test_nan_and_inf_flow_as_onnxruntime_does_on_the_cpu(two):
    model, bundle = two
    feeds = _feeds()
    feeds["x"][0, :3] = [np.nan, np.inf, -np.inf]
    got, want = runtime_min.load(bundle).run(feeds), _reference(model, feeds)
    for k in want:
        np.testing.assert_array_equal(np.isnan(got[k]), np.isnan(want[k]))
        np.testing.assert_array_equal(got[k][~np.isnan(got[k])], want[k][~np.isnan(want[k])])


@pytest.mark.parametrize(
    ("feeds", "message"),
    [
        ({"x": np.zeros((2, 5), np.float64)}, "'x' has dtype float64, the plan expects float32"),
        ({"x": np.zeros((2, 5), np.int32)}, "'x' has dtype int32"),
        ({"x": np.zeros((5, 2), np.float32)}, r"'x' has shape \[5, 2\]"),
        ({"x": np.zeros((2, 5, 1), np.float32)}, r"'x' has shape \[2, 5, 1\]"),
        ({"x": np.float32(1.0)}, r"'x' has shape \[\]"),
        ({"x": [[0.0] * 5] * 2}, "'x' has dtype float64"),
        ({"x": np.zeros((2, 5), ">f8")}, "has dtype float64"),
        ({"x": np.array([["a"] * 5] * 2)}, "has dtype str"),
    ],
)
def test_bad_feeds_are_one_line(two, feeds, message):
    _, bundle = two
    with pytest.raises(InputError, match=message):
        runtime_min.load(bundle).run(_feeds() | feeds)


@pytest.mark.parametrize(
    ("feeds", "message"),
    [({}, r"missing \['x', 'y'\]"), ({"z": np.zeros(1)}, r"unexpected \['z'\]")],
)
def test_missing_and_extra_feeds(two, feeds, message):
    _, bundle = two
    with pytest.raises(InputError, match=message):
        runtime_min.load(bundle).run(feeds)


def test_feeds_are_never_modified(two):
    _, bundle = two
    feeds = {k: v.astype(">f4") for k, v in _feeds().items()}
    before = {k: v.copy() for k, v in feeds.items()}
    runtime_min.load(bundle).run(feeds)
    assert all(np.array_equal(feeds[k], before[k]) and feeds[k].dtype == before[k].dtype for k in feeds)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("npu", "tpu", 'give "xrt" or "sim"'),
        ("cpu_threads", -1, "a whole number >= 0"),
        ("cpu_threads", 1.5, "a whole number >= 0"),
        ("zero_copy", "yes", "True or False"),
        ("disable", ["dsp"], "a list of cpu, gpu, npu"),
        ("vulkan_device", 1.5, "a device index or a name substring"),
        ("gpu", True, "unknown load option 'gpu'; the options are cpu_threads"),
    ],
)
def test_bad_load_options_are_type_errors_naming_the_valid_ones(two, option, value, message):
    _, bundle = two
    with pytest.raises(TypeError, match=message):
        runtime_min.load(bundle, **{option: value})


# --- model files and external data ---------------------------------------------------------------------------------


def _with_external_data(folder, location="weights.bin", cut=0):
    """conv_bn_relu with every initializer in one external file, then pointed at `location`."""
    model = conv_bn_relu_model()
    onnx.save(model, str(folder / "m.onnx"), save_as_external_data=True, location="weights.bin", size_threshold=0)
    model = onnx.load(str(folder / "m.onnx"), load_external_data=False)
    for init in model.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save(model, str(folder / "m.onnx"))
    if cut:
        data = (folder / "weights.bin").read_bytes()
        (folder / "weights.bin").write_bytes(data[:-cut])
    return folder / "m.onnx"


def test_external_data_beside_the_model_compiles(tmp_path):
    assert load_model(_with_external_data(tmp_path)).graph.ops


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("missing.bin", "needs 'missing.bin', which is missing"),
        ("../weights.bin", "not a path inside the model's folder"),
        ("/etc/hostname", "not a path inside the model's folder"),
        ("", "not a path inside the model's folder"),
    ],
)
def test_bad_external_data_locations(tmp_path, location, message):
    (tmp_path / "m").mkdir()
    path = _with_external_data(tmp_path / "m", location)
    with pytest.raises(ModelError, match=message):
        load_model(path)


def test_external_data_through_a_symlink_out_of_the_folder(tmp_path):
    (tmp_path / "m").mkdir()
    path = _with_external_data(tmp_path / "m")
    (tmp_path / "elsewhere.bin").write_bytes((tmp_path / "m" / "weights.bin").read_bytes())
    (tmp_path / "m" / "weights.bin").unlink()
    (tmp_path / "m" / "weights.bin").symlink_to(tmp_path / "elsewhere.bin")
    with pytest.raises(ModelError, match="leads outside the model's folder"):
        load_model(path)


def test_external_data_file_shorter_than_declared(tmp_path):
    with pytest.raises(ModelError, match="the data file is truncated"):
        load_model(_with_external_data(tmp_path, cut=100))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not an ONNX model"),
        (b"\x00\xffnot protobuf" * 20, "not an ONNX model"),
        (b"hello world", "not an ONNX model"),
    ],
)
def test_files_that_are_not_models(tmp_path, content, message):
    (tmp_path / "m.onnx").write_bytes(content)
    with pytest.raises(ModelError, match=message):
        load_model(tmp_path / "m.onnx")


def test_a_missing_model_and_a_folder_as_model(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "none.onnx")
    with pytest.raises(ModelError, match="is a directory"):
        load_model(tmp_path)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("x=99999999999999999999x3", "dimensions this large"),
        ("x=2147483648", "dimensions this large"),
        ("x=65536x65536x65536", "dimensions this large"),
        ("x=0x3", "positive integers"),
        ("x=-1x3", "positive integers"),
        ("x=1x3.5", "positive integers"),
        ("x", "write NAME=DIMxDIMx"),
        ("=1x3", "write NAME=DIMxDIMx"),
        ("x=", "write NAME=DIMxDIMx"),
    ],
)
def test_bad_shapes(spec, message):
    with pytest.raises(UsageError, match=message):
        parse_shapes([spec])


def test_a_shape_for_an_input_the_model_lacks(tmp_path):
    path = save(conv_bn_relu_model(batch="N"), tmp_path / "m.onnx")
    with pytest.raises(UsageError, match="not an input of the model"):
        load_model(path, {"image": (1, 3, 16, 16)})
    with pytest.raises(ShapeError, match="rank 2 but the model says rank 4"):
        load_model(path, {"x": (1, 3)})


# --- odd graphs ---------------------------------------------------------------------------------------------------


def _graph_model(nodes, inputs, outputs, inits=()):
    return _model(helper.make_graph(nodes, "g", inputs, outputs, list(inits)), opset=17)


def _compile_and_run(model, tmp_path, feeds):
    path = save(model, tmp_path / "m.onnx")
    bundle = compile_model(path, tmp_path / "plan", devices="cpu", target=TARGET).bundle
    with runtime_min.load(bundle) as plan:
        first = plan.run(feeds)
        second = plan.run(feeds)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    want = dict(zip(names, session.run(names, feeds), strict=True))
    return first, second, want


def test_an_output_that_is_a_constant(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    shape = helper.make_tensor_value_info("s", TensorProto.INT64, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"), helper.make_node("Relu", ["x"], ["y"], name="r")]
    feeds = {"x": np.ones((2, 3), np.float32)}
    first, second, want = _compile_and_run(_graph_model(nodes, [x], [y, shape]), tmp_path, feeds)
    assert np.array_equal(first["s"], want["s"]) and first["s"].dtype == np.int64
    first["s"][0] = 99  # the caller owns what it gets: the next run is not affected
    assert np.array_equal(second["s"], want["s"])


def test_a_graph_with_no_operators(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    feeds = {"x": np.arange(4, dtype=np.float32)}
    first, _, want = _compile_and_run(_graph_model([], [x], [x]), tmp_path, feeds)
    assert np.array_equal(first["x"], want["x"]) and first["x"] is not feeds["x"]


def test_a_zero_size_output_runs_and_prints(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [0, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [0, 3])
    model = _graph_model([helper.make_node("Relu", ["x"], ["y"], name="r")], [x], [y])
    first, _, _ = _compile_and_run(model, tmp_path, {"x": np.zeros((0, 3), np.float32)})
    assert first["y"].shape == (0, 3)
    result = ragc("run", tmp_path / "plan")
    assert result.returncode == 0 and "y: float32[0, 3] (empty)" in result.stdout, result.stderr


def test_a_string_output_runs_and_prints(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])
    y = helper.make_tensor_value_info("y", TensorProto.STRING, [3])
    model = _graph_model([helper.make_node("Cast", ["x"], ["y"], name="c", to=TensorProto.STRING)], [x], [y])
    first, _, want = _compile_and_run(model, tmp_path, {"x": np.array([1.5, 2.0, -3.0], np.float32)})
    assert list(first["y"]) == list(want["y"])
    result = ragc("run", tmp_path / "plan")
    assert result.returncode == 0 and "y: object[3] first" in result.stdout, result.stderr


# --- the command line ---------------------------------------------------------------------------------------------


def test_an_npz_input_is_refused_in_one_line(two, tmp_path):
    _, bundle = two
    np.savez(tmp_path / "x.npz", x=np.zeros((2, 5), np.float32))
    one_line_error(ragc("run", bundle, "--input", f"x={tmp_path / 'x.npz'}"), "is an .npz archive")


def test_a_pickled_npy_is_refused_in_one_line(two, tmp_path):
    _, bundle = two
    np.save(tmp_path / "x.npy", np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    one_line_error(ragc("run", bundle, "--input", f"x={tmp_path / 'x.npy'}"), "cannot read --input x")


@pytest.mark.parametrize("spec", ["x", "=file.npy", "x=/no/such/file.npy"])
def test_bad_input_specs(two, spec):
    _, bundle = two
    one_line_error(ragc("run", bundle, "--input", spec), "--input")


def test_trace_into_a_missing_folder_fails_before_running(two, tmp_path):
    _, bundle = two
    result = ragc("run", bundle, "--repeat", "100000", "--trace", tmp_path / "no" / "t.json")
    one_line_error(result, "does not exist; create it first")


def test_timeline_into_a_missing_folder(two, tmp_path):
    _, bundle = two
    one_line_error(ragc("inspect", bundle, "--timeline", tmp_path / "no" / "t.svg"), "does not exist")


def test_validate_with_a_missing_model(two, tmp_path):
    _, bundle = two
    one_line_error(ragc("validate", bundle, "--model", tmp_path / "none.onnx"), "does not exist")


def test_compile_with_bad_options_is_a_usage_error(two, tmp_path):
    model, _ = two
    result = ragc("compile", model, "-o", tmp_path / "p", "--devices", "cpu,dsp", "--target", TARGET)
    one_line_error(result, "bad --devices")
    assert result.returncode == 2


def test_a_model_error_exits_1(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"junk")
    result = ragc("compile", tmp_path / "m.onnx", "-o", tmp_path / "p")
    one_line_error(result, "not an ONNX model")
    assert result.returncode == 1


# --- closing while running -----------------------------------------------------------------------------------------


def test_close_while_other_threads_run_never_gives_them_a_bogus_failure(two):
    _, bundle = two
    for _ in range(5):
        plan = runtime_min.load(bundle)
        errors: list[BaseException] = []
        started = threading.Barrier(5)

        def runner(plan=plan, errors=errors, started=started):
            started.wait()
            for _ in range(50):
                try:
                    plan.run(_feeds())
                except RuntimeMinError as exc:
                    errors.append(exc)
                    return

        threads = [threading.Thread(target=runner) for _ in range(4)]
        for t in threads:
            t.start()
        started.wait()
        plan.close()
        for t in threads:
            t.join()
        assert all("closed; load it again" in str(e) for e in errors), errors
        with pytest.raises(RuntimeMinError, match="closed"):
            plan.run(_feeds())
        assert not [t for t in threading.enumerate() if t.name.startswith("runtime_min:")]
