"""ragc's code generators: GPU SPIR-V kernels from GLSL templates and NPU xclbin references."""
