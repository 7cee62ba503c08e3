"""Window-level face crops: one box per window, a flagged centre crop when no face is found."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from migr_rt.face.detector import FaceBox, FaceDetector


@dataclass
class FaceCrops:
    """Square face crops ``(T, S, S, 3)`` uint8 of one window and where they came from.

    ``fallback`` is True when no face was detected and the crops are a
    centre crop: consumers must not present those as a face analysis.
    """

    crops: np.ndarray
    box: FaceBox
    fallback: bool


def center_box(height: int, width: int, fraction: float = 0.8) -> FaceBox:
    """The centred square covering ``fraction`` of the shorter side: the deterministic fallback."""
    side = max(1, int(round(min(height, width) * fraction)))
    return FaceBox((width - side) // 2, (height - side) // 2, side, side, score=0.0)


def square_box(box: FaceBox, height: int, width: int, margin: float) -> FaceBox:
    """Grow ``box`` by ``margin`` on each side into a square, shifted (not shrunk) to fit the frame."""
    side = int(round(max(box.w, box.h) * (1 + 2 * margin)))
    side = max(1, min(side, height, width))
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    x = int(round(min(max(cx - side / 2, 0), width - side)))
    y = int(round(min(max(cy - side / 2, 0), height - side)))
    return FaceBox(x, y, side, side, box.score)


def crop_faces(
    frames: np.ndarray,
    detector: FaceDetector | None,
    size: int,
    *,
    margin: float = 0.15,
    probes: int = 3,
) -> FaceCrops:
    """Crop the window's face from every frame at ``size`` x ``size``.

    The detector runs on ``probes`` evenly spaced frames (not every frame:
    a window spans under a few seconds, and the per-frame cost matters on a
    2-core robot); the median of the largest detections is the window's box.
    When the detector finds nothing, the centre crop is used and flagged
    ``fallback``. With ``detector=None`` nothing is detected: the caller
    vouches that the frames show a face (e.g. pre-cropped), the centre crop
    is used and not flagged.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be a non-empty (T, H, W, 3) uint8 array, got {frames.shape} {frames.dtype}")
    t, h, w = frames.shape[:3]
    found: list[FaceBox] = []
    if detector is not None:
        for i in np.linspace(0, t - 1, num=min(probes, t)).round().astype(int):
            boxes = detector.detect(frames[i])
            if boxes:
                found.append(max(boxes, key=lambda b: b.area))
    if found:
        med = np.median(np.array([b.as_list() for b in found], dtype=np.float64), axis=0)
        box = square_box(FaceBox(*[int(round(v)) for v in med], score=len(found) / min(probes, t)), h, w, margin)
        fallback = False
    else:
        box = center_box(h, w)
        fallback = detector is not None
    region = frames[:, box.y : box.y + box.h, box.x : box.x + box.w]
    crops = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in region])
    return FaceCrops(crops=crops, box=box, fallback=fallback)
