"""Token generation over an LLM bundle (ragc compile --llm): the bundle's own plan decodes, its `prefill/` plan
reads the prompt, and the fixed-capacity KV cache lives in runtime-owned arrays both use."""

from runtime_min.generate.loop import generate

__all__ = ["generate"]
