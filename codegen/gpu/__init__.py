"""The GPU code generator: ONNX ops -> GLSL compute shaders (templates/) -> SPIR-V, and a dispatch program."""

from codegen.gpu.emit import FORMAT, Step, assemble, emit, lower, storage_plan, unsupported_reason

__all__ = ["FORMAT", "Step", "assemble", "emit", "lower", "storage_plan", "unsupported_reason"]
