"""Face detectors behind one small interface; OpenCV's Haar cascade is the default.

The cascade ships inside ``opencv-python-headless`` 4.x, so detection needs no
download. Anything with a ``detect(frame) -> list[FaceBox]`` method plugs in
(a DNN detector, a tracker, a robot's own perception).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np


#: A folder holding OpenCV's Haar cascade files, for an OpenCV without them (5.x dropped them from its wheels).
CASCADES_ENV = "MIGR_RT_HAAR_CASCADES"


def _find_cascade(path: Path) -> Path:
    """``path`` itself, else that name in ``$MIGR_RT_HAAR_CASCADES``, else in OpenCV's own cascade folder."""
    if path.is_absolute() or path.exists():
        found = path
    else:
        folders = [os.environ.get(CASCADES_ENV), getattr(getattr(cv2, "data", None), "haarcascades", None)]
        candidates = [Path(f) / path for f in folders if f]
        found = next((c for c in candidates if c.is_file()), candidates[0] if candidates else path)
    if not found.is_file():
        raise FileNotFoundError(
            f"{found}: Haar cascade not found (opencv-python-headless 4.x ships them, 5.x does not; "
            f"{CASCADES_ENV} can name a folder that holds {path.name})"
        )
    return found


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
        path = _find_cascade(Path(cascade))
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise ValueError(f"{path}: not a valid OpenCV cascade file")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size_frac = min_size_frac
        self.max_side = max_side

    def _grey(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        """The frame as the cascade sees it (grey, at most ``max_side``, equalised) and its scale."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 frame (H, W, 3), got {frame.shape} {frame.dtype}")
        h, w = frame.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            grey = cv2.resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        return cv2.equalizeHist(grey), scale

    def _search(self, grey: np.ndarray, scale: float, x0: int, y0: int, min_side: int,
                max_side: int | None) -> list[FaceBox]:
        kwargs = {"maxSize": (max_side, max_side)} if max_side else {}
        found = self._cascade.detectMultiScale(grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                               minSize=(min_side, min_side), **kwargs)
        boxes = [FaceBox(int((x + x0) / scale), int((y + y0) / scale), int(bw / scale), int(bh / scale))
                 for x, y, bw, bh in found]
        return sorted(boxes, key=lambda b: b.area, reverse=True)

    def detect(self, frame: np.ndarray) -> list[FaceBox]:
        grey, scale = self._grey(frame)
        side = max(12, int(self.min_size_frac * min(grey.shape)))
        return self._search(grey, scale, 0, 0, side, None)

    def detect_near(self, frame: np.ndarray, box: FaceBox, *, reach: float = 0.5,
                    size_range: tuple[float, float] = (0.7, 1.45)) -> list[FaceBox]:
        """Faces within ``reach`` box sides of ``box`` and sized ``size_range`` times its side.

        A tracker's per-frame step: the region around ``box`` is shrunk until
        the face is barely above the cascade's own window and scanned at
        those few scales only (~1.5 ms where a full scan of a 160 px frame
        takes ~6.5 ms, mostly the cascade's fixed cost); boxes are accurate
        to the shrink factor. A box away from the frame finds nothing.
        """
        if box.w <= 0 or box.h <= 0:
            raise ValueError(f"detect_near needs a box with a positive size, got {box}")
        grey, scale = self._grey(frame)
        h, w = grey.shape
        side = max(box.w, box.h) * scale
        pad = reach * side
        x0, y0 = max(0, int(box.x * scale - pad)), max(0, int(box.y * scale - pad))
        x1, y1 = min(w, int((box.x + box.w) * scale + pad + 1)), min(h, int((box.y + box.h) * scale + pad + 1))
        window = min(self._cascade.getOriginalWindowSize())
        # shrink so the smallest size searched is just above the cascade window (never enlarge)
        shrink = min(1.0, (window + 2) / (size_range[0] * side))
        floor = max(window, int(self.min_size_frac * min(h, w) * shrink))
        lo, hi = max(floor, int(size_range[0] * side * shrink)), int(size_range[1] * side * shrink) + 1
        if min(x1 - x0, y1 - y0) * shrink < lo or hi < lo:  # the region (if any) cannot hold such a face
            return []
        region = grey[y0:y1, x0:x1]
        if shrink < 1.0:
            region = cv2.resize(region, (max(1, round(region.shape[1] * shrink)), max(1, round(region.shape[0] * shrink))),
                                interpolation=cv2.INTER_AREA)
        return self._search(region, scale * shrink, x0 * shrink, y0 * shrink, lo, hi)
