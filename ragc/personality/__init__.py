"""The chip personality: chip identity, the profiler, the per-chip store and recorded runs."""
