"""The front end: load an ONNX file, make it static and clean, and view it as a ragc.ir.Graph."""

from ragc.frontend.load import LoadedModel, load_model, parse_shapes

__all__ = ["LoadedModel", "load_model", "parse_shapes"]
