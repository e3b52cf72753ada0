"""The benchmark harness: ragc against its peers (ONNX Runtime, IREE) on a fixed model set."""
