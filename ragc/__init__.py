"""ragc: an ahead-of-time compiler that splits one ONNX model across the CPU, a Vulkan GPU and an XDNA NPU.

Python API: `ragc.compile(model, out_dir, ...)` (see ragc.compiler.compile_model) and `ragc.profile(quick=True)`
(measure this chip; see ragc.personality.profile.profile_chip).
"""

__version__ = "0.1.0"


def compile(*args, **kwargs):  # noqa: A001 - the design's public name
    """Compile an ONNX model into a plan bundle; arguments as ragc.compiler.compile_model."""
    from ragc.compiler import compile_model

    return compile_model(*args, **kwargs)


def profile(*args, **kwargs):
    """Measure this chip's processors into a personality and store it; arguments as profile_chip."""
    from ragc.personality.profile import profile_chip
    from ragc.personality.store import save_personality

    personality = profile_chip(*args, **kwargs)
    save_personality(personality)
    return personality
