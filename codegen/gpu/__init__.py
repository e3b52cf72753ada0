"""The GPU code generator: ONNX ops -> GLSL compute shaders (templates/) -> SPIR-V, and a dispatch program."""

from codegen.gpu.emit import FORMAT, emit, lower, unsupported_reason

__all__ = ["FORMAT", "emit", "lower", "unsupported_reason"]
