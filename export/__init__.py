"""ONNX and TensorRT export (``migr_rt.export``); filled by the export issue."""
