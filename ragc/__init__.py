"""ragc: an ahead-of-time compiler that splits one ONNX model across the CPU, a Vulkan GPU and an XDNA NPU."""

__version__ = "0.1.0"
