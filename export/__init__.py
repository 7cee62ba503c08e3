"""Export checkpoints to self-describing artifact folders (``migr_rt.export``): ONNX, and TensorRT engines."""
