"""Decoder LLMs: the cache rewrite into prefill and decode phases, and their compilation into one bundle."""
