"""The cue vocabulary contract and the parameter -> cue description."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
from migr_rt.training.synth.cues import (
    CUES,
    CUES_BY_NAME,
    EMOTION_WORDS,
    INTENSITY_WORDS,
    cues_for,
    find_cues,
    implied_emotion_scores,
    intensity_word,
    vocabulary_texts,
)
from migr_rt.training.synth.describe import CUE_THRESHOLD, cue_activations, describe, describe_text
from migr_rt.training.synth.face import EXPRESSION_PROTOTYPES, Expression
from migr_rt.training.synth.params import blend, param_ranges
from migr_rt.training.synth.voice import VOICE_PROTOTYPES, VoiceExpression

from migr_rt.labels import DFEW_LABELS, MODALITIES

# Label words and their obvious inflections that would let an explanation copy the answer.
LABEL_FORMS = (
    "angry", "anger", "angrily", "disgust", "disgusted", "disgusting", "fear", "fearful", "afraid", "scared",
    "happy", "happiness", "happily", "neutral", "sad", "sadness", "sadly", "surprise", "surprised", "surprising",
)  # fmt: skip


def test_vocabulary_is_rich_in_both_modalities() -> None:
    for modality in MODALITIES:
        assert 12 <= len(cues_for(modality)) <= 20, modality
    assert len({c.name for c in CUES}) == len(CUES), "cue names must be unique"
    assert len({c.phrase for c in CUES}) == len(CUES), "phrases must be unique"
    assert set(INTENSITY_WORDS) == {"slightly", "clearly", "strongly"}
    assert all(0 < w <= 1 for w in INTENSITY_WORDS.values())


@pytest.mark.parametrize("cue", CUES, ids=lambda c: c.name)
def test_no_phrase_names_an_emotion(cue) -> None:
    words = re.findall(r"[a-z]+", cue.phrase.lower())
    for form in LABEL_FORMS + tuple(DFEW_LABELS):
        assert form not in words, f"{cue.name}: phrase {cue.phrase!r} contains the label word {form!r}"
    for stem in EMOTION_WORDS:
        assert stem not in cue.phrase.lower(), f"{cue.name}: phrase {cue.phrase!r} contains {stem!r}"


def test_no_phrase_is_a_substring_of_another() -> None:
    for a in CUES:
        for b in CUES:
            if a is not b:
                assert a.phrase not in b.phrase, f"{a.phrase!r} is inside {b.phrase!r}"
    for word in INTENSITY_WORDS:
        assert all(word not in c.phrase for c in CUES), f"intensity word {word!r} inside a phrase"


@pytest.mark.parametrize("modality", MODALITIES)
def test_every_emotion_is_top_supported_in_each_modality(modality: str) -> None:
    tops = {}
    for cue in cues_for(modality):
        best = max(cue.support.values())
        winners = [e for e, w in cue.support.items() if w == best]
        assert len(winners) == 1, f"{cue.name}: tie for top support {winners}"
        tops.setdefault(winners[0], []).append(cue.name)
    assert set(tops) == set(DFEW_LABELS), f"{modality}: emotions without a top cue: {set(DFEW_LABELS) - set(tops)}"


def test_support_weights_name_known_emotions_and_are_non_negative() -> None:
    for cue in CUES:
        assert cue.support, cue.name
        assert set(cue.support) <= set(DFEW_LABELS), cue.name
        assert all(w >= 0 for w in cue.support.values()), cue.name


def test_cue_rejects_negative_support_and_unknown_modality() -> None:
    from migr_rt.training.synth.cues import Cue

    with pytest.raises(ValueError, match="support"):
        Cue("x", "visual", "odd thing", {"happy": -0.1})
    with pytest.raises(ValueError, match="modality"):
        Cue("x", "smell", "odd thing", {"happy": 0.1})


def test_cues_are_hashable_and_picklable() -> None:
    assert pickle.loads(pickle.dumps(CUES)) == CUES
    assert len(set(CUES)) == len(CUES)


def test_find_cues_reads_intensity_words_and_defaults_to_one() -> None:
    text = "The face shows Strongly lowered brows, clearly narrowed eyes and pressed lips; the voice is loud voice."
    found = [(c.name, w) for c, w in find_cues(text)]
    assert found == [("brows_lowered", 1.0), ("eyes_narrowed", 0.7), ("lips_pressed", 1.0), ("voice_loud", 1.0)]
    assert find_cues("slightly raised brows")[0][1] == INTENSITY_WORDS["slightly"]
    # an intensity word that does not immediately precede the phrase does not count
    assert find_cues("strongly, raised brows")[0][1] == 1.0


def test_find_cues_matches_whole_phrases_only() -> None:
    assert find_cues("") == []
    assert find_cues("she was angry") == []  # a label is not a cue
    assert find_cues("unraised brows") == []
    assert [c.name for c, _ in find_cues("raised brows, raised brows")] == ["brows_raised", "brows_raised"]


def test_implied_emotion_scores_sum_support_times_intensity() -> None:
    scores = implied_emotion_scores(find_cues("clearly raised cheeks, slightly upturned mouth corners"))
    assert set(scores) == set(DFEW_LABELS)
    assert scores["happy"] == pytest.approx(0.7 * 1.0 + 0.35 * 1.0)
    assert scores["angry"] == 0.0
    scores = implied_emotion_scores(find_cues("strongly trembling voice, slightly quiet voice"))
    assert max(scores, key=scores.get) == "fear"
    assert scores["sad"] == pytest.approx(0.3 + 0.35 * 0.9)


def test_vocabulary_texts_cover_every_phrase_and_word_deterministically() -> None:
    texts = vocabulary_texts()
    assert texts == vocabulary_texts()
    joined = "\n".join(texts)
    for cue in CUES:
        assert cue.phrase in texts
        assert sum(cue.phrase in t for t in texts) > 1, f"{cue.phrase!r} never appears inside a sentence"
    for word in INTENSITY_WORDS:
        assert word in texts
    assert not any(re.search(rf"\b{lab}\b", joined) for lab in DFEW_LABELS)


def test_intensity_word_maps_each_weight_back_to_its_word() -> None:
    for word, weight in INTENSITY_WORDS.items():
        assert intensity_word(weight) == word
    assert intensity_word(0.2) == "slightly"
    assert intensity_word(0.6) == "clearly"
    assert intensity_word(0.9) == "strongly"


# --- description from rendered parameters -------------------------------------------------------


@pytest.mark.parametrize("modality,prototypes", [("visual", EXPRESSION_PROTOTYPES), ("audio", VOICE_PROTOTYPES)])
def test_prototype_descriptions_imply_their_own_emotion(modality: str, prototypes) -> None:
    for emotion, params in prototypes.items():
        statements = describe(modality, params)
        assert statements, (modality, emotion)
        scores = implied_emotion_scores((s.cue, s.intensity) for s in statements)
        assert max(scores, key=scores.get) == emotion, (modality, emotion, describe_text(statements))
        assert all(s.cue.modality == modality for s in statements)


def test_strong_happy_face_states_the_smile_and_weak_one_states_less() -> None:
    zero = np.zeros(len(param_ranges(Expression)))
    strong = describe("visual", blend(EXPRESSION_PROTOTYPES["happy"], 0.95, zero))
    weak = describe("visual", blend(EXPRESSION_PROTOTYPES["happy"], 0.3, zero))
    names = [s.cue.name for s in strong]
    assert "mouth_corners_up" in names and "cheeks_raised" in names
    assert all(s.intensity_word == "strongly" for s in strong if s.cue.name != "face_relaxed")
    assert sum(s.intensity for s in weak if s.cue.name != "face_relaxed") < sum(s.intensity for s in strong)
    assert {s.intensity_word for s in weak if s.cue.name != "face_relaxed"} == {"slightly"}
    faint = describe("visual", blend(EXPRESSION_PROTOTYPES["happy"], 0.1, zero))
    assert [s.cue.name for s in faint] == ["face_relaxed"], "below-threshold movement is not stated"


def test_description_follows_parameters_not_labels() -> None:
    # a distractor that raises the brows of a neutral face is reported as raised brows
    params = Expression(brow_raise=0.5)
    assert [s.cue.name for s in describe("visual", params)][0] == "brows_raised"
    acts = cue_activations("audio", VoiceExpression(loudness=-0.6, tremor=0.3))
    assert acts["voice_quiet"] == pytest.approx(0.6) and acts["voice_loud"] == 0.0
    assert acts["voice_trembling"] == pytest.approx(0.3)
    stated = {s.cue.name for s in describe("audio", VoiceExpression(loudness=-0.6, tremor=0.3))}
    assert stated == {"voice_quiet", "voice_trembling"}
    assert all(a >= 0 for a in acts.values())


def test_describe_text_uses_intensity_word_before_phrase_and_round_trips() -> None:
    statements = describe("visual", EXPRESSION_PROTOTYPES["angry"])
    text = describe_text(statements)
    assert text.startswith("strongly ")
    back = find_cues(text)
    assert [c.name for c, _ in back] == [s.cue.name for s in statements]
    assert [w for _, w in back] == [INTENSITY_WORDS[s.intensity_word] for s in statements]
    assert all(s.intensity >= CUE_THRESHOLD for s in statements)


def test_describe_rejects_the_wrong_parameter_type() -> None:
    with pytest.raises(TypeError):
        describe("visual", VoiceExpression())
    with pytest.raises(TypeError):
        describe("smell", Expression())  # type: ignore[arg-type]


def test_every_cue_is_reachable_from_some_parameter_setting() -> None:
    reachable: set[str] = set()
    for modality, cls in (("visual", Expression), ("audio", VoiceExpression)):
        reachable |= {s.cue.name for s in describe(modality, cls())}
        for name, (lo, hi) in param_ranges(cls).items():
            for value in (lo, hi):
                if value:
                    reachable |= {s.cue.name for s in describe(modality, cls(**{name: value}))}
    assert reachable == set(CUES_BY_NAME)
