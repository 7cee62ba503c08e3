"""One window in, one labelled, modality-attributed prediction out.

The small public API over model loading, the face front end and MI scoring;
the streaming runtime builds on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from migr_rt.artifact import is_artifact, read_manifest
from migr_rt.backends import Backend, greedy_decode, load_backend
from migr_rt.bundled import default_model
from migr_rt.face import FaceDetector, HaarFaceDetector
from migr_rt.model.saved_tokenizer import SavedTokenizer
from migr_rt.rationale import (answer_anchor, check_answer_mode, rationale_prompt, rationale_text, read_closing,
                              resolve_judge)
from migr_rt.preprocess import prepare_window
from migr_rt.traces import ParsedTrace, parse_trace


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
    """A generated explanation: the raw trace and what it says (``parsed.first_modality``, segments, answer).

    ``label`` is the window's fast label; with the answer anchored (the
    default) the trace closes with it. ``model_answer`` is what the model
    itself wrote or would have written after ``<answer>`` (None when it
    wrote no ``<answer>``): where it differs from ``label``, the model's own
    continuation would have contradicted the reported label.
    ``explanation_emotion`` is what the explanation's cue statements argue
    for (the predictor's judge; None when it states no cue the judge knows),
    and ``consistent`` whether that is the answer (None when unknown).
    """

    text: str
    parsed: ParsedTrace
    present: dict[str, bool]
    label: str | None = None
    model_answer: str | None = None
    explanation_emotion: str | None = None
    consistent: bool | None = None

    @property
    def answer(self) -> str | None:
        return self.parsed.answer

    @property
    def first_modality(self) -> str | None:
        return self.parsed.first_modality


def _recipe(folder: Path) -> str | None:
    """The training recipe of a checkpoint (``train_config.json``) or of the checkpoint an artifact came from."""
    info = folder / "train_config.json"
    if info.is_file():
        return json.loads(info.read_text()).get("recipe")
    if is_artifact(folder):
        return read_manifest(folder).extra.get("recipe")
    return None


class Predictor:
    """Opens a model once; :meth:`predict` scores one window (label + MI in one batched pass).

    ``checkpoint`` is a checkpoint folder (run by torch) or an artifact folder
    written by ``migr-rt export`` (onnxruntime or TensorRT); None is the
    bundled model (:func:`migr_rt.bundled.default_model`: its ONNX export on
    a CPU where onnxruntime runs it and on an install without torch, else its
    checkpoint); ``backend``
    picks how (see :func:`migr_rt.backends.load_backend`); ``judge`` reads
    rationales' explanations (see :class:`Rationale`).
    """

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        *,
        backend: str = "auto",
        device: str = "cpu",
        detector: FaceDetector | None = None,
        threads: int | None = None,
        judge=None,
    ) -> None:
        self.checkpoint = Path(checkpoint) if checkpoint is not None else default_model(backend, device)
        self.backend: Backend = load_backend(self.checkpoint, backend, device=device, threads=threads)
        # Checkpoint folders were verified by the torch backend; artifacts by their manifest's hashes.
        self.tokenizer = SavedTokenizer.from_folder(self.checkpoint)
        self.config = self.backend.config
        self.detector = detector if detector is not None else HaarFaceDetector()
        #: reads each rationale's explanation (``judge``: any ExplanationJudge; default: the cue judge)
        self.judge = resolve_judge(self.config, judge, self.checkpoint)
        recipe = _recipe(self.checkpoint)
        #: whether the checkpoint was trained to write rationales (baseline/migr), not only to answer (base)
        self.reasons = recipe in ("baseline", "migr")

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
        tokens = self.backend.encode(
            win.pixel_values[None] if win.pixel_values is not None else None,
            win.audio_values[None] if win.audio_values is not None else None,
        )
        res = self.backend.score_mi(tokens, present[None])
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

    def explain(
        self,
        frames: np.ndarray | None,
        audio: np.ndarray | None,
        fps: float = 25.0,
        max_new_tokens: int = 128,
        opening: str = "mi",
        answer: str = "label",
    ) -> Rationale:
        """Generate (greedy) the rationale for one window: ``<think>`` segments, summary, ``<answer>``.

        ``opening="mi"`` starts the rationale with the modality that MI (for
        the predicted label, the same pass :meth:`predict` makes) finds
        dominant; ``"free"`` lets the model choose. ``answer="label"`` closes
        it with the label :meth:`predict` gives, so the answer and its
        explanation never name two emotions; ``"model"`` keeps the model's
        own closing (what evaluation measures). Slower than :meth:`predict`
        (one decoder step per token); a base checkpoint (``self.reasons``
        False) was never trained to write one.
        """
        if opening not in ("mi", "free"):
            raise ValueError(f"opening must be 'mi' or 'free', got {opening!r}")
        check_answer_mode(answer)
        cfg = self.config
        win = prepare_window(frames, audio, cfg, self.detector, fps=fps)
        present_map = {m: bool(p) for m, p in zip(cfg.modalities, win.present.tolist())}
        if not win.present.any():
            return Rationale("", parse_trace(""), present_map)
        pixels = win.pixel_values[None] if win.pixel_values is not None else None
        audio_values = win.audio_values[None] if win.audio_values is not None else None
        tokens = self.backend.encode(pixels, audio_values)
        res = self.backend.score_mi(tokens, win.present[None])
        label = cfg.labels[int(res.predicted[0])]
        opening_modality = None
        if opening == "mi":
            dom = int(res.dominant[0])
            opening_modality = cfg.modalities[dom] if dom >= 0 else cfg.modalities[0]
        ids, lead = rationale_prompt(cfg, opening_modality)
        anchor = answer_anchor(cfg, label, answer)
        out = greedy_decode(self.backend, [ids], tokens, win.present[None], max_new_tokens=max_new_tokens,
                            anchor=anchor)
        text = rationale_text(self.tokenizer, cfg, out.tokens[0, : int(out.lengths[0])].tolist(), lead)
        parsed = parse_trace(text, cfg.labels)
        own, emotion, consistent = read_closing(cfg, self.judge, parsed, anchor)
        return Rationale(text, parsed, present_map, label=label, model_answer=own, explanation_emotion=emotion,
                         consistent=consistent)
