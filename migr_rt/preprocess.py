"""One analysis window -> model inputs, the same way for the demo, training and the runtime."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from migr_rt.face import FaceBox, FaceCrops, FaceDetector, crop_faces

if TYPE_CHECKING:
    from migr_rt.model.config import MigrConfig


@dataclass
class WindowInputs:
    """Arrays for one window plus what the front end found (numpy: the backends' interface takes them as is).

    ``pixel_values`` ``(T, 3, S, S)`` float32 in [0, 1] or None (no video);
    ``audio_values`` ``(samples,)`` float32 or None (no usable audio);
    ``present`` ``(M,)`` bool, the evidence to use; ``face`` the crop box;
    ``face_fallback`` True when the detector found no face (then the visual
    modality is not present, whatever ``pixel_values`` holds).
    """

    pixel_values: np.ndarray | None
    audio_values: np.ndarray | None
    present: np.ndarray
    face: FaceBox | None
    face_fallback: bool


def crops_to_pixels(crops: np.ndarray) -> np.ndarray:
    """``(N, S, S, 3)`` uint8 RGB face crops -> ``(N, 3, S, S)`` float32 in [0, 1], the visual encoder's input."""
    return np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)


def sample_frames(frames: np.ndarray, count: int) -> np.ndarray:
    """``count`` frames evenly spread over the window (repeats when the window is shorter)."""
    idx = np.linspace(0, len(frames) - 1, num=count).round().astype(int)
    return frames[idx]


def float_audio(audio) -> np.ndarray:
    """``audio`` as float32 samples; integer samples are refused, as int16 PCM cast as is would be 32768x too loud
    (the demo's "sad" read as "angry 0.92")."""
    audio = np.asarray(audio)
    if not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"audio must be float samples in [-1, 1], got {audio.dtype} (for int16 PCM, divide by 32768)")
    return audio.astype(np.float32)


def fit_audio(audio: np.ndarray, samples: int) -> np.ndarray:
    """Trim or zero-pad to exactly ``samples`` (the model's window), keeping the start aligned with the video."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if len(audio) >= samples:
        return audio[:samples]
    return np.pad(audio, (0, samples - len(audio)))


def window_frames(fps: float, seconds: float) -> int:
    """Frames of a window of ``seconds`` at ``fps`` (at least one)."""
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    return max(1, int(round(seconds * fps)))


def center_window(
    frames: np.ndarray | None, audio: np.ndarray | None, fps: float, sample_rate: int, seconds: float
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The ``seconds``-long window at the centre of a clip, cut at the same instant from both streams.

    Training sees one window per clip; the centre holds the expression's
    apex more often than the first seconds do.
    """
    lengths = []
    if frames is not None and len(frames):
        lengths.append(len(frames) / fps)
    if audio is not None and len(audio):
        lengths.append(len(audio) / sample_rate)
    start = max(0.0, (max(lengths, default=0.0) - seconds) / 2)
    if frames is not None:
        first = int(round(start * fps))
        frames = frames[first : first + window_frames(fps, seconds)]
    if audio is not None:
        first = int(round(start * sample_rate))
        audio = audio[first : first + int(round(seconds * sample_rate))]
    return frames, audio


def prepare_window(
    frames: np.ndarray | None,
    audio: np.ndarray | None,
    config: MigrConfig,
    detector: FaceDetector | None,
    *,
    fps: float,
    silence_rms: float = 1e-4,
) -> WindowInputs:
    """Face crops and a fixed-length waveform for one window starting where both inputs start.

    Both streams are cut to the model's window (``config.audio_seconds``):
    the frames to that many seconds at ``fps``, the audio to
    ``config.audio_samples``, so the face and the voice cover the same span.
    A modality without evidence is absent (``present`` False): no frames, or
    a detector that found no face (the centre crop is still returned,
    flagged); no audio, or audio quieter than ``silence_rms`` (a dead
    microphone or a silent track).
    """
    pixel_values = None
    face: FaceCrops | None = None
    if frames is not None and len(frames):
        frames = np.asarray(frames)[: window_frames(fps, config.audio_seconds)]
        face = crop_faces(sample_frames(frames, config.num_frames), detector, config.face_size)
        pixel_values = crops_to_pixels(face.crops)
    audio_values = None
    if audio is not None and len(audio):
        audio = float_audio(audio)
        if not np.all(np.isfinite(audio)):
            raise ValueError("audio window contains NaN or Inf samples")
        audio = fit_audio(audio, config.audio_samples)
        if float(np.sqrt(np.mean(audio**2))) >= silence_rms:
            audio_values = audio
    face_fallback = face.fallback if face else False
    present = np.array([pixel_values is not None and not face_fallback, audio_values is not None])
    return WindowInputs(
        pixel_values=pixel_values,
        audio_values=audio_values,
        present=present,
        face=face.box if face else None,
        face_fallback=face_fallback,
    )
