"""One analysis window -> model inputs, the same way for the demo, training and the runtime."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from migr_rt.face import FaceBox, FaceCrops, FaceDetector, crop_faces
from migr_rt.model.config import MigrConfig


@dataclass
class WindowInputs:
    """Tensors for one window plus what the front end found.

    ``pixel_values`` ``(T, 3, S, S)`` float in [0, 1] or None (no video);
    ``audio_values`` ``(samples,)`` float32 or None (no audio);
    ``present`` ``(M,)`` bool; ``face`` the crop box, ``face_fallback`` True
    when no face was detected.
    """

    pixel_values: torch.Tensor | None
    audio_values: torch.Tensor | None
    present: torch.Tensor
    face: FaceBox | None
    face_fallback: bool


def sample_frames(frames: np.ndarray, count: int) -> np.ndarray:
    """``count`` frames evenly spread over the window (repeats when the window is shorter)."""
    idx = np.linspace(0, len(frames) - 1, num=count).round().astype(int)
    return frames[idx]


def fit_audio(audio: np.ndarray, samples: int) -> np.ndarray:
    """Trim or zero-pad to exactly ``samples`` (the model's window), keeping the start aligned with the video."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if len(audio) >= samples:
        return audio[:samples]
    return np.pad(audio, (0, samples - len(audio)))


def prepare_window(
    frames: np.ndarray | None,
    audio: np.ndarray | None,
    config: MigrConfig,
    detector: FaceDetector | None,
    *,
    silence_rms: float = 1e-4,
) -> WindowInputs:
    """Face crops and a fixed-length waveform for one window.

    Audio quieter than ``silence_rms`` counts as absent: a dead microphone
    or a silent track is no evidence, and MI is computed over what is present.
    """
    pixel_values = None
    face: FaceCrops | None = None
    if frames is not None and len(frames):
        face = crop_faces(sample_frames(np.asarray(frames), config.num_frames), detector, config.face_size)
        pixel_values = torch.from_numpy(face.crops).permute(0, 3, 1, 2).float().div_(255.0)
    audio_values = None
    if audio is not None and len(audio):
        audio = np.asarray(audio, dtype=np.float32)
        if not np.all(np.isfinite(audio)):
            raise ValueError("audio window contains NaN or Inf samples")
        if float(np.sqrt(np.mean(audio**2))) >= silence_rms:
            audio_values = torch.from_numpy(fit_audio(audio, config.audio_samples))
    present = torch.tensor([pixel_values is not None, audio_values is not None])
    return WindowInputs(
        pixel_values=pixel_values,
        audio_values=audio_values,
        present=present,
        face=face.box if face else None,
        face_fallback=face.fallback if face else False,
    )
