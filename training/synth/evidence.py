"""How much emotional evidence each modality of a clip carries, and the ground truth that follows.

Every clip gets, per modality, an ``(emotion, strength)`` pair. Rendering
moves that modality's parameters ``strength`` of the way from neutral to the
emotion's prototype (plus a small distractor), so the generator knows which
modality truly carries the label; MIGR's modality importance is scored against
that.

Clip kinds and their strengths:

* ``consistent``: both modalities show the label at 0.55-1.0;
* ``visual_dominant`` / ``audio_dominant``: the named modality shows the label
  at 0.7-1.0, the other shows it at most 0.3 or shows a neutral state. For the
  neutral label the named modality is calm (0.9-1.0) and the other shows a
  mild display of some other emotion (0.45-0.6, never neutral: a neutral display
  is blank whatever its strength, so two calm modalities would be
  indistinguishable and neither could be dominant);
* ``ambiguous``: both show the label weakly (0.2-0.45);
* ``conflicting``: each modality shows a different emotion; the stronger one
  (0.65-1.0) gives the label and the other is at least 0.3 weaker.

The dominant modality is the one whose evidence supports the label more
(:meth:`ModalityEvidence.support_for`); ``one_sided`` marks clips where that
support gap is at least :data:`ONE_SIDED_MARGIN`, the subset on which modality
importance must recover the dominant modality. "Neutral" is the absence of a
display, so a weak display of any emotion also counts as support for neutral;
neutral-labelled conflicting and dominant clips are drawn so that the calm
modality still supports neutral most. A clip whose two modalities both show
neutral is never one-sided: both render as the neutral prototype, only noise
differs, so nothing in the input can make one of them dominant.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from migr_rt.labels import MODALITIES

NEUTRAL = "neutral"

#: Clip kinds in the order their intervals are laid out for assignment (see :func:`kind_for_index`).
KINDS: tuple[str, ...] = ("consistent", "visual_dominant", "audio_dominant", "ambiguous", "conflicting")

#: Default share of each kind: ambiguous + conflicting = 35%, comfortably above the 30% a default corpus needs.
DEFAULT_KIND_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {"consistent": 0.35, "visual_dominant": 0.15, "audio_dominant": 0.15, "ambiguous": 0.175, "conflicting": 0.175}
)

#: A clip is one-sided when its dominant modality's evidence for the label exceeds the other's by this much.
ONE_SIDED_MARGIN = 0.4

_GOLDEN = (math.sqrt(5) - 1) / 2


@dataclass(frozen=True)
class ModalityEvidence:
    """The emotion one modality shows and how strongly (0 = indistinguishable from neutral)."""

    emotion: str
    strength: float

    def support_for(self, label: str) -> float:
        """How much this modality, on its own, argues for ``label``.

        A modality showing the label supports it with its strength. For the
        neutral label a weak non-neutral display still looks mostly neutral,
        so it supports neutral with ``1 - strength``; anything else gives 0.
        """
        if self.emotion == label:
            return self.strength
        if label == NEUTRAL:
            return 1.0 - self.strength
        return 0.0


@dataclass(frozen=True)
class ClipEvidence:
    """Ground truth of one clip: label, kind and per-modality evidence."""

    label: str
    kind: str
    visual: ModalityEvidence
    audio: ModalityEvidence

    def of(self, modality: str) -> ModalityEvidence:
        if modality not in MODALITIES:
            raise ValueError(f"unknown modality {modality!r}")
        return self.visual if modality == "visual" else self.audio

    @property
    def dominant(self) -> str:
        """The modality whose evidence supports the label more (visual on an exact tie)."""
        v, a = self.visual.support_for(self.label), self.audio.support_for(self.label)
        return "visual" if v >= a else "audio"

    @property
    def one_sided(self) -> bool:
        """True when the dominant modality's support exceeds the other's by at least :data:`ONE_SIDED_MARGIN`.

        Never true when both modalities show neutral: the neutral prototype is
        the blank display, so their "strengths" differ only in noise.
        """
        if self.visual.emotion == self.audio.emotion == NEUTRAL:
            return False
        v, a = self.visual.support_for(self.label), self.audio.support_for(self.label)
        return abs(v - a) >= ONE_SIDED_MARGIN - 1e-9


def validate_kind_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Normalised weights over :data:`KINDS` (missing kinds get 0); ValueError on unknown kinds or bad values."""
    unknown = set(weights) - set(KINDS)
    if unknown:
        raise ValueError(f"kind_weights: unknown kinds {sorted(unknown)}; expected some of {KINDS}")
    values = {k: float(weights.get(k, 0.0)) for k in KINDS}
    if any(not math.isfinite(v) or v < 0 for v in values.values()):
        raise ValueError(f"kind_weights: weights must be finite and >= 0, got {dict(weights)}")
    total = sum(values.values())
    if total <= 0:
        raise ValueError("kind_weights: at least one kind needs a positive weight")
    return {k: v / total for k, v in values.items()}


def kind_for_index(index: int, weights: Mapping[str, float], phase: float) -> str:
    """Kind of clip ``index``: a golden-ratio (Kronecker) sequence through the weight intervals.

    Depends only on the index, the weights and a seed-derived ``phase``, so
    clip i is the same in every corpus size, and every prefix of the corpus
    holds each kind in close to its share (low discrepancy), unlike
    independent draws.
    """
    u = (phase + index * _GOLDEN) % 1.0
    edge = 0.0
    for kind in KINDS:
        edge += weights.get(kind, 0.0)
        if u < edge:
            return kind
    return next(k for k in reversed(KINDS) if weights.get(k, 0.0) > 0)


def sample_evidence(label: str, kind: str, labels: Sequence[str], rng: np.random.Generator) -> ClipEvidence:
    """Draw both modalities' evidence for a clip of ``kind`` labelled ``label``."""
    if kind not in KINDS:
        raise ValueError(f"unknown clip kind {kind!r}; expected one of {KINDS}")
    u = rng.uniform
    if kind == "consistent":
        return ClipEvidence(label, kind, ModalityEvidence(label, u(0.55, 1.0)), ModalityEvidence(label, u(0.55, 1.0)))
    if kind == "ambiguous":
        return ClipEvidence(label, kind, ModalityEvidence(label, u(0.2, 0.45)), ModalityEvidence(label, u(0.2, 0.45)))
    if kind in ("visual_dominant", "audio_dominant"):
        if label == NEUTRAL:
            # "Barely showing neutral" is just neutral again, so the weak modality shows a faint
            # trace of another emotion (as faint as the weak modality of any other label). A
            # clearer display would make "neutral" a doubtful label for the clip; a faint one
            # still looks mostly neutral (support 1 - strength), so these clips are honestly
            # not one-sided: the support gap s_strong - (1 - s_weak) stays below the margin.
            strong = ModalityEvidence(label, u(0.9, 1.0))
            weak = ModalityEvidence(_other_emotion(label, labels, rng), u(0.15, 0.3))
        else:
            strong = ModalityEvidence(label, u(0.7, 1.0))
            if rng.random() < 0.5:
                weak = ModalityEvidence(NEUTRAL, u(0.3, 0.8))  # the other modality looks calm
            else:
                weak = ModalityEvidence(label, u(0.0, 0.3))  # the other barely shows it
        pair = (strong, weak) if kind == "visual_dominant" else (weak, strong)
        return ClipEvidence(label, kind, *pair)
    # conflicting: the stronger modality carries the label, the other a different emotion
    other = _other_emotion(label, labels, rng)
    if label == NEUTRAL:
        # A faint emotional display still looks mostly neutral (support 1 - strength); keep it
        # strong enough that the calm modality remains the one supporting "neutral" most.
        s_strong = u(0.75, 1.0)
        s_weak = u(max(0.2, 1.05 - s_strong), s_strong - 0.3)
    else:
        s_strong = u(0.65, 1.0)
        s_weak = u(0.2, s_strong - 0.3)
    strong = ModalityEvidence(label, s_strong)
    weak = ModalityEvidence(other, s_weak)
    pair = (strong, weak) if rng.random() < 0.5 else (weak, strong)
    return ClipEvidence(label, kind, *pair)


def _other_emotion(label: str, labels: Sequence[str], rng: np.random.Generator) -> str:
    """A label other than ``label`` and, where there is a choice, other than neutral."""
    others = [e for e in labels if e not in (label, NEUTRAL)] or [e for e in labels if e != label]
    if not others:
        raise ValueError(f"{label!r} needs a second label to contrast with, got {list(labels)}")
    return others[int(rng.integers(len(others)))]


def distractor(n_params: int, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Small idiosyncratic deviations from the blended parameters, larger when the evidence is weak.

    Every parameter jitters a little; with some probability one parameter gets
    a noticeable bump, so a weak or neutral modality is rarely perfectly blank
    (and may honestly show a faint unrelated cue).
    """
    d = rng.normal(0.0, 0.03 + 0.07 * (1.0 - strength), n_params)
    if rng.random() < 0.1 + 0.5 * (1.0 - strength):
        d[int(rng.integers(n_params))] += rng.choice((-1.0, 1.0)) * rng.uniform(0.1, 0.3)
    return d
