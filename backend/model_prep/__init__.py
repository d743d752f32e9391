"""Model preparation: export or collect ONNX models and describe them in a manifest."""
