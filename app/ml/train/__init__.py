"""Training and ONNX export (needs the `train` extra: PyTorch)."""
