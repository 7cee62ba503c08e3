"""One window in, one labelled, modality-attributed prediction out.

The small public API over model loading, the face front end and MI scoring;
the streaming runtime builds on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from migr_rt.face import FaceDetector, HaarFaceDetector
from migr_rt.mi import score_modality_importance
from migr_rt.model import load_checkpoint
from migr_rt.preprocess import prepare_window


def default_checkpoint() -> Path:
    """The bundled checkpoint (``migr_rt/assets/default``)."""
    path = Path(str(resources.files("migr_rt") / "assets" / "default"))
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: the bundled checkpoint is missing from this installation")
    return path


@dataclass
class Prediction:
    """What the model says about one window.

    ``label`` is None when there was nothing to analyse (no face and no
    audio): the model is not asked to make one up.
    """

    label: str | None
    probs: dict[str, float]
    mi: dict[str, float]
    importance: dict[str, float]
    dominant: str | None
    present: dict[str, bool]
    face_box: list[int] | None = None
    face_found: bool = False
    extras: dict = field(default_factory=dict)


class Predictor:
    """Loads a checkpoint once; :meth:`predict` scores one window (label + MI in one batched pass)."""

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        *,
        device: str = "cpu",
        detector: FaceDetector | None = None,
    ) -> None:
        self.checkpoint = Path(checkpoint) if checkpoint is not None else default_checkpoint()
        self.model, self.tokenizer = load_checkpoint(self.checkpoint, device=device)
        self.config = self.model.config
        self.detector = detector if detector is not None else HaarFaceDetector()

    @torch.inference_mode()
    def predict(self, frames: np.ndarray | None, audio: np.ndarray | None, fps: float = 25.0) -> Prediction:
        """Score one window.

        ``frames`` ``(N, H, W, 3)`` uint8 RGB at ``fps`` and mono float32
        ``audio`` at the model's sample rate, both starting at the same
        instant; the model's window (``config.audio_seconds``) of each is used.
        """
        cfg = self.config
        win = prepare_window(frames, audio, cfg, self.detector, fps=fps)
        present = win.present
        names = cfg.modalities
        present_map = {m: bool(p) for m, p in zip(names, present.tolist())}
        face_box = win.face.as_list() if win.face is not None and not win.face_fallback else None
        if not present.any():
            return Prediction(None, {}, {}, {}, None, present_map, face_box, False)
        res = score_modality_importance(
            self.model,
            win.pixel_values[None] if win.pixel_values is not None else None,
            win.audio_values[None] if win.audio_values is not None else None,
            present=present[None],
        )
        probs = res.probs[0].tolist()
        dom = int(res.dominant[0])
        return Prediction(
            label=cfg.labels[int(res.predicted[0])],
            probs=dict(zip(cfg.labels, probs)),
            mi=dict(zip(names, res.mi[0].tolist())),
            importance=dict(zip(names, res.importance[0].tolist())),
            dominant=names[dom] if dom >= 0 else None,
            present=present_map,
            face_box=face_box,
            face_found=face_box is not None,
        )
