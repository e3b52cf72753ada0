"""The code generators' errors: one line naming the op or template and the fix; the CLI prints them like any
other ragc error."""

from ragc.errors import RagcError


class CodegenError(RagcError):
    """A partition cannot be turned into artifacts for its processor."""


class LoweringError(CodegenError):
    """An op cannot be lowered to GPU kernels; the message names the op and why."""


class ShaderError(CodegenError):
    """A template failed to render or a shader failed to compile (or glslc is missing)."""


class NpuCodegenError(CodegenError):
    """An op handed to the NPU emitter cannot run there."""
