"""Every onnx-graphsurgeon call ragc makes, in one place: import, export, fold constants, clean up."""

from __future__ import annotations

import onnx
import onnx_graphsurgeon as gs
import onnxruntime

from ragc.errors import ModelError
from ragc.frontend.infer import infer_shapes


def import_graph(model: onnx.ModelProto) -> gs.Graph:
    return gs.import_onnx(model)


def export_model(graph: gs.Graph, like: onnx.ModelProto) -> onnx.ModelProto:
    """Export, keeping the original opset imports (of the domains still used) and IR version."""
    model = gs.export_onnx(graph, do_type_check=True)
    used = {node.domain or "" for node in model.graph.node} | {""}
    del model.opset_import[:]
    model.opset_import.extend(o for o in like.opset_import if (o.domain or "") in used or o.domain == "ai.onnx")
    model.ir_version = like.ir_version
    return model


def fold_constants(graph: gs.Graph) -> gs.Graph:
    """Evaluate every subgraph whose inputs are all constants (with onnxruntime), then drop what is unused."""
    severity = gs.logger.G_LOGGER.severity
    gs.logger.G_LOGGER.severity = gs.logger.G_LOGGER.ERROR
    onnxruntime.set_default_logger_severity(3)  # folding runs onnxruntime, whose optimizer warnings are noise here
    try:
        graph.toposort()
        # fold_shapes=False: graphsurgeon's Shape folding ignores Shape's start/end (opset 15); static.py does it
        graph.fold_constants(error_ok=False, size_threshold=None, fold_shapes=False)
    except Exception as exc:  # graphsurgeon re-raises whatever onnxruntime raised
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"constant folding failed ({first_line}); run onnx.checker on the model") from exc
    finally:
        gs.logger.G_LOGGER.severity = severity
    return cleanup(graph)


def reinfer_shapes(graph: gs.Graph) -> gs.Graph:
    """The graph re-imported after strict shape inference, every inner tensor's old (maybe symbolic) shape dropped."""
    inputs = {t.name for t in graph.inputs}
    for tensor in graph.tensors().values():
        if isinstance(tensor, gs.Variable) and tensor.name not in inputs:
            tensor.shape = None
    model = gs.export_onnx(graph, do_type_check=False)
    del model.graph.value_info[:]  # inference fills them in again (tensors new nodes wrote have no type yet)
    return gs.import_onnx(infer_shapes(model))


def cleanup(graph: gs.Graph) -> gs.Graph:
    return graph.cleanup(remove_unused_graph_inputs=False).toposort()
