"""The clip record every reader, the synthetic corpus and the runtime exchange."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Clip:
    """One audiovisual clip resampled to fixed rates.

    Frames are RGB uint8 ``(T, H, W, 3)`` at ``fps``; audio is mono float32 in
    [-1, 1] at ``sample_rate``. A missing modality is ``None`` (never an empty
    placeholder), so consumers can tell "silent" from "absent".
    """

    clip_id: str
    frames: np.ndarray | None
    audio: np.ndarray | None
    fps: float
    sample_rate: int
    label: str | None = None
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def has_video(self) -> bool:
        return self.frames is not None and len(self.frames) > 0

    @property
    def has_audio(self) -> bool:
        return self.audio is not None and len(self.audio) > 0

    @property
    def duration(self) -> float:
        """Length in seconds of the longer of the two streams."""
        video_s = len(self.frames) / self.fps if self.has_video else 0.0
        audio_s = len(self.audio) / self.sample_rate if self.has_audio else 0.0
        return max(video_s, audio_s)
