"""Describe rendered parameters with cue statements ("clearly narrowed eyes").

Descriptions are computed from the parameter values that were actually
rendered, never from the label, so a cue list states exactly what is in the
clip: a weak modality yields fewer and weaker cues, and a distractor that
happens to raise the brows is reported as raised brows. Grounding checks
compare an explanation's cues with these lists.

Each cue except the two "relaxed" cues reads one parameter in one direction;
its activation is that signed value clipped to [0, 1]. A relaxed cue's
activation falls as the strongest other activation of its modality rises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from migr_rt.training.synth.cues import CUES_BY_NAME, INTENSITY_WORDS, Cue, cues_for, intensity_word
from migr_rt.training.synth.face import Expression
from migr_rt.training.synth.params import as_dict, param_ranges
from migr_rt.training.synth.voice import VoiceExpression

#: Cues weaker than this are not stated.
CUE_THRESHOLD = 0.2
#: The relaxed cue fades to 0 as the strongest other cue of the modality reaches this activation.
RELAXED_SPAN = 0.5

#: cue name -> (parameter, direction): activation = clip(direction * value, 0, 1).
CUE_SOURCES: dict[str, tuple[str, float]] = {
    "brows_lowered": ("brow_raise", -1.0),
    "brows_raised": ("brow_raise", 1.0),
    "brows_knitted": ("brow_knit", 1.0),
    "brows_inner_raised": ("brow_inner", 1.0),
    "eyes_wide": ("eye_open", 1.0),
    "eyes_narrowed": ("eye_open", -1.0),
    "lids_drooping": ("lid_droop", 1.0),
    "nose_wrinkled": ("nose_wrinkle", 1.0),
    "upper_lip_raised": ("upper_lip_raise", 1.0),
    "cheeks_raised": ("cheek_raise", 1.0),
    "mouth_corners_up": ("mouth_curve", 1.0),
    "mouth_corners_down": ("mouth_curve", -1.0),
    "lips_pressed": ("lip_press", 1.0),
    "lips_stretched": ("lip_stretch", 1.0),
    "mouth_rounded": ("mouth_round", 1.0),
    "jaw_dropped": ("jaw_drop", 1.0),
    "head_lowered": ("head_down", 1.0),
    "voice_loud": ("loudness", 1.0),
    "voice_quiet": ("loudness", -1.0),
    "pitch_high": ("pitch", 1.0),
    "pitch_low": ("pitch", -1.0),
    "contour_rising": ("pitch_slope", 1.0),
    "contour_falling": ("pitch_slope", -1.0),
    "intonation_melodic": ("pitch_range", 1.0),
    "intonation_flat": ("pitch_range", -1.0),
    "pitch_jump": ("pitch_jump", 1.0),
    "voice_trembling": ("tremor", 1.0),
    "speech_fast": ("rate", 1.0),
    "speech_slow": ("rate", -1.0),
    "timbre_harsh": ("tension", 1.0),
    "timbre_bright": ("brightness", 1.0),
    "timbre_dark": ("brightness", -1.0),
    "voice_breathy": ("breathiness", 1.0),
    "voice_creaky": ("creak", 1.0),
    "attacks_sharp": ("attack", 1.0),
    "onset_burst": ("onset_burst", 1.0),
}

#: The cue stating that a modality shows nothing in particular.
RELAXED_CUES: dict[str, str] = {"visual": "face_relaxed", "audio": "voice_steady"}

#: The parameter vector type of each modality.
PARAMETER_TYPES: dict[str, type] = {"visual": Expression, "audio": VoiceExpression}


@dataclass(frozen=True)
class CueStatement:
    """A cue as stated for one clip: the cue, its activation in [0, 1] and the intensity word for it."""

    cue: Cue
    intensity: float

    @property
    def intensity_word(self) -> str:
        return intensity_word(self.intensity)

    @property
    def text(self) -> str:
        """``"<intensity word> <phrase>"``, e.g. "clearly narrowed eyes"."""
        return f"{self.intensity_word} {self.cue.phrase}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.cue.name,
            "phrase": self.cue.phrase,
            "intensity_word": self.intensity_word,
            "intensity": self.intensity,
        }


def cue_activations(modality: str, params: Expression | VoiceExpression) -> dict[str, float]:
    """Activation in [0, 1] of every cue of ``modality`` for the rendered ``params``."""
    expected = PARAMETER_TYPES.get(modality)
    if expected is None or not isinstance(params, expected):
        raise TypeError(
            f"{modality} cues are read from {expected.__name__ if expected else '?'}, got {type(params).__name__}"
        )
    values = as_dict(params)
    acts: dict[str, float] = {}
    for cue in cues_for(modality):
        if cue.name in CUE_SOURCES:
            name, direction = CUE_SOURCES[cue.name]
            acts[cue.name] = min(max(direction * values[name], 0.0), 1.0)
    relaxed = RELAXED_CUES[modality]
    acts[relaxed] = min(max(1.0 - max(acts.values(), default=0.0) / RELAXED_SPAN, 0.0), 1.0)
    return acts


def describe(modality: str, params: Expression | VoiceExpression) -> list[CueStatement]:
    """The cues stated for ``params``: activation >= :data:`CUE_THRESHOLD`, strongest first."""
    acts = cue_activations(modality, params)
    order = {c.name: i for i, c in enumerate(cues_for(modality))}
    chosen = [CueStatement(CUES_BY_NAME[n], a) for n, a in acts.items() if a >= CUE_THRESHOLD]
    return sorted(chosen, key=lambda s: (-s.intensity, order[s.cue.name]))


def describe_text(statements: list[CueStatement]) -> str:
    """Statements joined as explanation-ready text: "strongly lowered brows, clearly narrowed eyes"."""
    return ", ".join(s.text for s in statements)


def _check_sources() -> None:
    """Fail at import if the mapping and the vocabulary or parameter declarations drift apart."""
    for name, (param_name, _) in CUE_SOURCES.items():
        cue = CUES_BY_NAME.get(name)
        if cue is None:
            raise RuntimeError(f"CUE_SOURCES names unknown cue {name!r}")
        if param_name not in param_ranges(PARAMETER_TYPES[cue.modality]):
            raise RuntimeError(f"cue {name!r} reads unknown {cue.modality} parameter {param_name!r}")
    mapped = set(CUE_SOURCES) | set(RELAXED_CUES.values())
    missing = [c.name for c in CUES_BY_NAME.values() if c.name not in mapped]
    if missing:
        raise RuntimeError(f"vocabulary cues with no parameter source: {missing}")
    if set(INTENSITY_WORDS) != {intensity_word(w) for w in INTENSITY_WORDS.values()}:
        raise RuntimeError("intensity_word() does not map every intensity weight back to its word")


_check_sources()
