"""The front end: what it accepts, what it rejects (with one clear line), and the rewrites it makes."""

import numpy as np
import onnx
import onnxruntime
import pytest
from models import conv_bn_relu_model, light_model, save, two_input_model
from onnx import TensorProto, helper

from ragc.errors import ModelError, ShapeError, UsageError
from ragc.frontend import load_model, parse_shapes


def _run_onnx(model: onnx.ModelProto, feeds):
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def test_batchnorm_folds_into_conv_and_keeps_numerics(tmp_path):
    original = conv_bn_relu_model()
    loaded = load_model(save(original, tmp_path / "m.onnx"))
    assert [op.op_type for op in loaded.graph.ops].count("BatchNormalization") == 0
    x = np.random.default_rng(1).random((1, 3, 16, 16), np.float32)
    np.testing.assert_allclose(
        _run_onnx(loaded.proto, {"x": x})[0], _run_onnx(original, {"x": x})[0], rtol=1e-4, atol=1e-5
    )


def test_nodes_get_unique_names_and_every_tensor_a_static_shape(tmp_path):
    loaded = load_model(save(two_input_model(), tmp_path / "m.onnx"))
    names = [op.name for op in loaded.graph.ops]
    assert len(set(names)) == len(names)
    for op in loaded.graph.ops:
        for t in loaded.graph.output_tensors(op):
            assert all(d > 0 for d in t.shape)


def test_old_opset_with_initializers_as_inputs_is_upgraded():
    loaded = load_model(light_model("squeezenet"))  # opset 9, IR 3: initializers listed among inputs
    assert loaded.graph.opset == 17
    assert loaded.graph.inputs == ["data_0"]


def test_model_is_not_modified(tmp_path):
    path = save(conv_bn_relu_model(), tmp_path / "m.onnx")
    before = open(path, "rb").read()
    load_model(path)
    assert open(path, "rb").read() == before


def test_external_data_is_loaded(tmp_path):
    model = conv_bn_relu_model()
    onnx.save(model, str(tmp_path / "ext.onnx"), save_as_external_data=True, size_threshold=0, location="w.bin")
    loaded = load_model(tmp_path / "ext.onnx")
    assert loaded.graph.tensors["fc_w"].data.shape == (8, 10)


def test_dynamic_shape_needs_shape_option(tmp_path):
    path = save(conv_bn_relu_model(batch="N"), tmp_path / "dyn.onnx")
    with pytest.raises(ShapeError, match=r"dynamic input shape: x\[Nx3x16x16\].*--shape"):
        load_model(path)
    loaded = load_model(path, parse_shapes(["x=2x3x16x16"]))
    assert loaded.graph.tensors["y"].shape == (2, 10)


@pytest.mark.parametrize(
    ("spec", "message"),
    [("x=2x3", "rank 2"), ("x=1x4x16x16", "fixes it to 3"), ("nope=1x3x16x16", "not an input")],
)
def test_wrong_shape_option(tmp_path, spec, message):
    path = save(conv_bn_relu_model(batch="N"), tmp_path / "dyn.onnx")
    with pytest.raises((ShapeError, UsageError), match=message):
        load_model(path, parse_shapes([spec]))


@pytest.mark.parametrize("spec", ["x", "x=", "=1x2", "x=1xa", "x=0x3"])
def test_malformed_shape_option(spec):
    with pytest.raises(UsageError, match="NAME=DIMxDIM"):
        parse_shapes([spec])


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "none.onnx")


def test_not_onnx(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x00\xffthis is not protobuf" * 10)
    with pytest.raises(ModelError, match="not an ONNX model"):
        load_model(path)


def test_invalid_model(tmp_path):
    model = two_input_model()
    model.graph.node[1].input[0] = "no_such_tensor"
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        load_model(save(model, tmp_path / "bad.onnx"))


def test_unknown_operator(tmp_path):
    model = two_input_model()
    model.graph.node[0].op_type = "FancyRelu"
    with pytest.raises(ModelError, match="unsupported operator 'FancyRelu'.*node 'relu'"):
        load_model(save(model, tmp_path / "bad.onnx"))


def test_custom_domain_operator(tmp_path):
    model = two_input_model()
    model.graph.node[0].domain = "com.example"
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(ModelError, match="domain 'com.example'"):
        load_model(save(model, tmp_path / "bad.onnx"))


def test_too_new_opset(tmp_path):
    model = two_input_model()
    model.opset_import[0].version = 99
    with pytest.raises(ModelError, match="opset 99 is newer"):
        load_model(save(model, tmp_path / "new.onnx"))


def test_control_flow_is_rejected(tmp_path):
    branch = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["o"])],
        "b",
        [],
        [helper.make_tensor_value_info("o", TensorProto.FLOAT, [1])],
    )
    node = helper.make_node("If", ["c"], ["y"], name="if", then_branch=branch, else_branch=branch)
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    with pytest.raises((ModelError, ShapeError)):
        load_model(save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "if.onnx"))


@pytest.mark.parametrize(
    ("shape", "perm", "becomes_reshape"),
    [((5, 1, 8), [1, 0, 2], True), ((1, 5, 1, 8), [2, 1, 3, 0], True), ((5, 2, 8), [1, 0, 2], False)],
)
def test_transpose_of_unit_axes_is_a_reshape(tmp_path, shape, perm, becomes_reshape):
    """torch's [S, 1, D] -> [1, S, D] at batch 1 moves no element: no copy, same values as onnxruntime's."""
    out_shape = [shape[p] for p in perm]
    graph = helper.make_graph(
        [helper.make_node("Transpose", ["x"], ["t"], perm=perm), helper.make_node("Relu", ["t"], ["y"])],
        "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
    )
    path = save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "t.onnx")
    loaded = load_model(path)
    assert ("Reshape" in {op.op_type for op in loaded.graph.ops}) == becomes_reshape
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    ours = _run_onnx(loaded.proto, {"x": x})[0]
    np.testing.assert_array_equal(ours, np.maximum(np.transpose(x, perm), 0))
