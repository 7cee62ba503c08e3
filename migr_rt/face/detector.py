"""Face detectors behind one small interface; OpenCV's Haar cascade is the default.

The cascade ships inside ``opencv-python-headless`` 4.x, so detection needs no
download. Anything with a ``detect(frame) -> list[FaceBox]`` method plugs in
(a DNN detector, a tracker, a robot's own perception).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np


@dataclass(frozen=True)
class FaceBox:
    """Axis-aligned face box in pixel coordinates of the frame it was found in."""

    x: int
    y: int
    w: int
    h: int
    score: float = 1.0

    @property
    def area(self) -> int:
        return self.w * self.h

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


@runtime_checkable
class FaceDetector(Protocol):
    """Finds faces in one RGB uint8 frame ``(H, W, 3)``."""

    def detect(self, frame: np.ndarray) -> list[FaceBox]: ...


class HaarFaceDetector:
    """OpenCV Haar cascade (frontal faces), run on a downscaled grey frame for speed.

    ``min_size_frac`` ignores faces smaller than that fraction of the shorter
    frame side: on a robot camera those are bystanders, not the person
    addressed.
    """

    def __init__(
        self,
        cascade: str | Path = "haarcascade_frontalface_default.xml",
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size_frac: float = 0.15,
        max_side: int = 320,
    ) -> None:
        path = Path(cascade)
        if not path.is_absolute() and not path.exists():
            path = Path(cv2.data.haarcascades) / path
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: Haar cascade not found (opencv-python-headless 4.x ships them; 5.x does not)"
            )
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise ValueError(f"{path}: not a valid OpenCV cascade file")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size_frac = min_size_frac
        self.max_side = max_side

    def detect(self, frame: np.ndarray) -> list[FaceBox]:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 frame (H, W, 3), got {frame.shape} {frame.dtype}")
        h, w = frame.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            grey = cv2.resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        grey = cv2.equalizeHist(grey)
        side = max(12, int(self.min_size_frac * min(grey.shape)))
        found = self._cascade.detectMultiScale(
            grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(side, side)
        )
        boxes = [FaceBox(int(x / scale), int(y / scale), int(bw / scale), int(bh / scale)) for x, y, bw, bh in found]
        return sorted(boxes, key=lambda b: b.area, reverse=True)
