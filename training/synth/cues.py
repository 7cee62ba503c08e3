"""The cue vocabulary: the only words an explanation may use to state evidence.

Everything that reads or writes explanations shares this module: the corpus
generator describes each rendered clip with these phrases, the explanation
judge infers an implied emotion from them, the grounding check compares stated
cues with the clip's cues, and the tokenizer is trained on them. As
:data:`LEXICON` it is the built-in :class:`~migr_rt.training.lexicon.CueLexicon`,
the one a judge reads when a model brings no lexicon of its own.

Contract (enforced by the tests, relied on by the judge):

* A phrase never contains an emotion label word, so an explanation can only
  argue for an emotion through cues, never by naming it.
* No phrase is a substring of another, so finding phrases in text is
  unambiguous.
* Every emotion is the best-supported emotion of at least one cue in each
  modality, so either modality alone can argue for any label.
* An intensity word, when present, immediately precedes the phrase it scales
  ("clearly narrowed eyes"); phrases are adjective + noun so this reads well.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from migr_rt.training.lexicon import Cue, CueLexicon, implied_emotion_scores

from migr_rt.labels import MODALITIES


def _cue(name: str, modality: str, phrase: str, **support: float) -> Cue:
    return Cue(name, modality, phrase, support)


CUES: tuple[Cue, ...] = (
    # --- visual: brows
    _cue("brows_lowered", "visual", "lowered brows", angry=1.0, disgust=0.4),
    _cue("brows_raised", "visual", "raised brows", surprise=1.0, fear=0.5),
    _cue("brows_knitted", "visual", "knitted brows", fear=0.7, angry=0.6, sad=0.3),
    _cue("brows_inner_raised", "visual", "upturned inner brows", sad=1.0, fear=0.4),
    # --- visual: eyes
    _cue("eyes_wide", "visual", "widened eyes", fear=0.9, surprise=0.8),
    _cue("eyes_narrowed", "visual", "narrowed eyes", angry=0.8, disgust=0.6),
    _cue("lids_drooping", "visual", "drooping eyelids", sad=1.0),
    # --- visual: nose, cheeks, mouth, jaw, head
    _cue("nose_wrinkled", "visual", "wrinkled nose", disgust=1.0, angry=0.2),
    _cue("upper_lip_raised", "visual", "raised upper lip", disgust=1.0, angry=0.2),
    _cue("cheeks_raised", "visual", "raised cheeks", happy=1.0),
    _cue("mouth_corners_up", "visual", "upturned mouth corners", happy=1.0),
    _cue("mouth_corners_down", "visual", "downturned mouth corners", sad=0.9, disgust=0.4),
    _cue("lips_pressed", "visual", "pressed lips", angry=1.0, sad=0.2),
    _cue("lips_stretched", "visual", "stretched lips", fear=1.0, disgust=0.2),
    _cue("mouth_rounded", "visual", "rounded open mouth", surprise=0.9, fear=0.2),
    _cue("jaw_dropped", "visual", "dropped jaw", surprise=1.0, fear=0.4),
    _cue("head_lowered", "visual", "lowered head", sad=0.8, disgust=0.2),
    _cue("face_relaxed", "visual", "relaxed facial muscles", neutral=1.0),
    # --- audio: loudness and pitch
    _cue("voice_loud", "audio", "loud voice", angry=0.9, surprise=0.5, happy=0.3),
    _cue("voice_quiet", "audio", "quiet voice", sad=0.9, fear=0.3),
    _cue("pitch_high", "audio", "raised pitch", fear=0.7, happy=0.5, surprise=0.5),
    _cue("pitch_low", "audio", "lowered pitch", sad=0.7, disgust=0.6),
    _cue("contour_rising", "audio", "rising pitch contour", happy=0.6, fear=0.5, surprise=0.4),
    _cue("contour_falling", "audio", "falling pitch contour", sad=0.6, disgust=0.5, angry=0.4),
    _cue("intonation_melodic", "audio", "lively melodic intonation", happy=1.0, surprise=0.3),
    _cue("intonation_flat", "audio", "flat monotone delivery", sad=0.5, neutral=0.4),
    _cue("pitch_jump", "audio", "sudden upward pitch jump", surprise=1.0),
    _cue("voice_trembling", "audio", "trembling voice", fear=1.0, sad=0.3),
    # --- audio: tempo, timbre, articulation
    _cue("speech_fast", "audio", "fast speech rate", fear=0.6, angry=0.5, happy=0.4),
    _cue("speech_slow", "audio", "slow speech rate", sad=0.7, disgust=0.6),
    _cue("timbre_harsh", "audio", "harsh strained timbre", angry=1.0, disgust=0.3),
    _cue("timbre_bright", "audio", "bright timbre", happy=0.7, surprise=0.3),
    _cue("timbre_dark", "audio", "dark muffled timbre", sad=0.8),
    _cue("voice_breathy", "audio", "breathy voice", fear=0.7, sad=0.4),
    _cue("voice_creaky", "audio", "creaky rasping voice", disgust=1.0),
    _cue("attacks_sharp", "audio", "sharp clipped syllable attacks", angry=0.8, surprise=0.4),
    _cue("onset_burst", "audio", "sudden loud onset", surprise=0.9),
    _cue("voice_steady", "audio", "even and steady voice", neutral=1.0),
)

#: Cues by their stable name.
CUES_BY_NAME: Mapping[str, Cue] = MappingProxyType({c.name: c for c in CUES})

#: Intensity word -> weight. The word immediately precedes the cue phrase it scales.
INTENSITY_WORDS: Mapping[str, float] = MappingProxyType({"slightly": 0.35, "clearly": 0.7, "strongly": 1.0})

#: Words (and obvious inflections) that name an emotion; no phrase may contain one.
EMOTION_WORDS: tuple[str, ...] = (
    "angry", "anger", "angri", "disgust", "fear", "afraid", "scared", "happy", "happi", "joy",
    "neutral", "sad", "surpris", "astonish",
)  # fmt: skip

#: The vocabulary as a lexicon: what the judge, grounding, coverage and rewards read by default.
LEXICON = CueLexicon(CUES, INTENSITY_WORDS, EMOTION_WORDS, name="builtin")


def cues_for(modality: str) -> tuple[Cue, ...]:
    """The cues of one modality, in vocabulary order."""
    return LEXICON.cues_for(modality)


def intensity_word(magnitude: float) -> str:
    """The intensity word for a cue activation in [0, 1]: the word whose weight is nearest."""
    return min(INTENSITY_WORDS, key=lambda w: abs(INTENSITY_WORDS[w] - magnitude))


def find_cues(text: str) -> list[tuple[Cue, float]]:
    """Every vocabulary phrase in ``text`` with its intensity weight (:meth:`CueLexicon.find` of :data:`LEXICON`)."""
    return LEXICON.find(text)


#: Sentence frames used to give the tokenizer phrases in context; ``{}`` takes a cue list.
_TEMPLATES: dict[str, tuple[str, ...]] = {
    "visual": ("the face shows {}", "on the face: {}", "{} are visible on the face"),
    "audio": ("the voice has {}", "in the voice: {}", "the speech shows {}"),
}


def vocabulary_texts() -> list[str]:
    """Every phrase and intensity word, plus template sentences that use them (for tokenizer training).

    Deterministic: the same list on every call, so a tokenizer trained on it is reproducible.
    """
    texts: list[str] = [c.phrase for c in CUES] + list(INTENSITY_WORDS)
    for modality in MODALITIES:
        mod_cues = cues_for(modality)
        words = list(INTENSITY_WORDS)
        for i, cue in enumerate(mod_cues):
            other = mod_cues[(i + 3) % len(mod_cues)]
            listed = f"{words[i % len(words)]} {cue.phrase}, {words[(i + 1) % len(words)]} {other.phrase}"
            for template in _TEMPLATES[modality]:
                texts.append(template.format(listed))
    return texts


__all__ = ["CUES", "CUES_BY_NAME", "Cue", "EMOTION_WORDS", "INTENSITY_WORDS", "LEXICON", "cues_for", "find_cues",
           "implied_emotion_scores", "intensity_word", "vocabulary_texts"]
