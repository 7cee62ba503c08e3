"""Face front end: detection (pluggable, Haar by default) and window-level crops."""

from migr_rt.face.crop import FaceCrops, center_box, crop_faces, square_box
from migr_rt.face.detector import FaceBox, FaceDetector, HaarFaceDetector
from migr_rt.face.tracker import TrackingFaceDetector

__all__ = ["FaceBox", "FaceDetector", "HaarFaceDetector", "TrackingFaceDetector", "FaceCrops", "crop_faces", "center_box", "square_box"]
