"""One window in, one labelled, modality-attributed prediction out.

The small public API over model loading, the face front end and MI scoring;
the streaming runtime builds on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from migr_rt.face import FaceDetector, HaarFaceDetector
from migr_rt.generate import GenerationConfig, generate
from migr_rt.mi import score_modality_importance
from migr_rt.model import load_checkpoint
from migr_rt.model.layout import prefix_ids
from migr_rt.preprocess import prepare_window
from migr_rt.traces import ParsedTrace, parse_trace


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


@dataclass
class Rationale:
    """A generated explanation: the raw trace and what it says (``parsed.first_modality``, segments, answer)."""

    text: str
    parsed: ParsedTrace
    present: dict[str, bool]

    @property
    def answer(self) -> str | None:
        return self.parsed.answer

    @property
    def first_modality(self) -> str | None:
        return self.parsed.first_modality


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
        info = self.checkpoint / "train_config.json"
        recipe = json.loads(info.read_text()).get("recipe") if info.is_file() else None
        #: whether the checkpoint was trained to write rationales (baseline/migr), not only to answer (base)
        self.reasons = recipe in ("baseline", "migr")

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

    @torch.inference_mode()
    def explain(
        self,
        frames: np.ndarray | None,
        audio: np.ndarray | None,
        fps: float = 25.0,
        max_new_tokens: int = 128,
        opening: str = "mi",
    ) -> Rationale:
        """Generate (greedy) the rationale for one window: ``<think>`` segments, summary, ``<answer>``.

        ``opening="mi"`` starts the rationale with the modality that MI (for
        the predicted label, the same pass :meth:`predict` makes) finds
        dominant; ``"free"`` lets the model choose. Slower than
        :meth:`predict` (one decoder step per token); a base checkpoint
        (``self.reasons`` False) was never trained to write one.
        """
        if opening not in ("mi", "free"):
            raise ValueError(f"opening must be 'mi' or 'free', got {opening!r}")
        cfg = self.config
        win = prepare_window(frames, audio, cfg, self.detector, fps=fps)
        present_map = {m: bool(p) for m, p in zip(cfg.modalities, win.present.tolist())}
        if not win.present.any():
            return Rationale("", parse_trace(""), present_map)
        pixels = win.pixel_values[None] if win.pixel_values is not None else None
        audio_values = win.audio_values[None] if win.audio_values is not None else None
        ids = prefix_ids(cfg) + [cfg.special_token_ids["think_start"]]
        lead = ""
        if opening == "mi":
            dom = int(score_modality_importance(self.model, pixels, audio_values, present=win.present[None]).dominant[0])
            first = cfg.modalities[dom] if dom >= 0 else cfg.modalities[0]
            ids.append(cfg.special_token_ids[f"{first}_start"])
            lead = f"<{first}>"
        prompt = torch.tensor([ids])
        out = generate(
            self.model, prompt,
            pixels, audio_values, present=win.present[None], config=GenerationConfig(max_new_tokens=max_new_tokens),
        )
        eos = self.tokenizer.convert_ids_to_tokens(cfg.special_token_ids["eos"]) or ""
        text = "<think>" + lead + out.texts(self.tokenizer)[0]
        if eos and text.endswith(eos):
            text = text[: -len(eos)]
        return Rationale(text, parse_trace(text, cfg.labels), present_map)
