"""Face tracking for streams: search near the last face, scan the whole frame only now and then.

A window samples 8 frames of one person; a full cascade scan of each costs
~6.5 ms on a 160 px frame (every scale, every position), most of the window's
CPU time. Between two sampled frames a face moves little and keeps its size,
so the tracker scans a region around the last box at nearby scales (~1.5 ms)
and falls back to a full scan when the face is lost, the frame size changes,
or every ``refresh`` frames (to pick up a nearer, larger face).
"""

from __future__ import annotations

import threading

import numpy as np

from migr_rt.face.detector import FaceBox, HaarFaceDetector


class TrackingFaceDetector:
    """A :class:`~migr_rt.face.FaceDetector` that follows the largest face across consecutive frames.

    Stateful: feed it the frames of one stream in order. Its boxes are the
    inner detector's, found in a smaller search space; on a full scan it
    returns what the inner detector returns.
    """

    def __init__(self, inner: HaarFaceDetector | None = None, *, refresh: int = 8, reach: float = 0.5,
                 size_range: tuple[float, float] = (0.7, 1.45)) -> None:
        if refresh < 1:
            raise ValueError(f"refresh must be >= 1 frame, got {refresh}")
        if not (0 < size_range[0] <= 1 <= size_range[1]):
            raise ValueError(f"size_range must bracket 1 (smaller, larger), got {size_range}")
        self.inner = inner if inner is not None else HaarFaceDetector()
        if not hasattr(self.inner, "detect_near"):
            raise TypeError(f"{type(self.inner).__name__} cannot search near a box (no detect_near method)")
        self.refresh, self.reach, self.size_range = refresh, reach, size_range
        self._lock = threading.Lock()
        self._forget()

    def fresh(self) -> TrackingFaceDetector:
        """A new tracker with these settings over the same inner detector (one per stream)."""
        return TrackingFaceDetector(self.inner, refresh=self.refresh, reach=self.reach, size_range=self.size_range)

    def reset(self) -> None:
        """Forget the tracked face (a new stream or a scene cut): the next frame gets a full scan."""
        with self._lock:
            self._forget()

    def _forget(self) -> None:
        self._last: FaceBox | None = None
        self._shape: tuple[int, ...] | None = None
        self._since_full = 0
        self.full_scans = 0
        self.tracked = 0

    def detect(self, frame: np.ndarray) -> list[FaceBox]:
        with self._lock:
            last = self._last if frame.shape == self._shape and self._since_full < self.refresh else None
            found = self.inner.detect_near(frame, last, reach=self.reach, size_range=self.size_range) if last else []
            if found:
                self.tracked += 1
                self._since_full += 1
            else:
                found = self.inner.detect(frame)
                self.full_scans += 1
                self._since_full = 1
            self._last = found[0] if found else None
            self._shape = frame.shape
            return found
