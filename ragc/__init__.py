"""ragc: an ahead-of-time compiler that splits one ONNX model across the CPU, a Vulkan GPU and an XDNA NPU.

Python API: `ragc.compile(model, out_dir, ...)` (see ragc.pipeline.compile_model), `ragc.compile_llm(model, out_dir,
max_context)` (a decoder with its KV cache: docs/llm.md) and `ragc.profile(quick=True)`
(measure this chip; see ragc.profiler.profile.profile_chip).
"""

from ragc.version import VERSION as __version__  # noqa: F401  (the public version attribute)


def compile(*args, **kwargs):  # noqa: A001 - the design's public name
    """Compile an ONNX model into a plan bundle; arguments as ragc.pipeline.compile_model."""
    from ragc.pipeline import compile_model

    return compile_model(*args, **kwargs)


def profile(*args, **kwargs):
    """Measure this chip's processors into a personality and store it; arguments as profile_chip."""
    from ragc.personality.store import save_personality
    from ragc.profiler.profile import profile_chip

    personality = profile_chip(*args, **kwargs)
    save_personality(personality)
    return personality


def compile_llm(*args, **kwargs):
    """Compile a decoder exported with its KV cache into an LLM bundle; arguments as ragc.llm.compile.compile_llm."""
    from ragc.llm.compile import compile_llm as compile_decoder

    return compile_decoder(*args, **kwargs)
