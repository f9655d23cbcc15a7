"""Running the shipped ONNX models: loading them (``model``) and preparing their input (``preprocess``)."""
