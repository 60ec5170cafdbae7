"""Export: ONNX graphs (backbone / head / fused) + manifest, TensorRT engine build and engine cache."""
