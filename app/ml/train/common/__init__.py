"""What both trainings share: augmentation, ONNX writing, bank caches, optimiser and checkpoints."""
