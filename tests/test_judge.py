"""The explanation judge reads cue statements only; grounding, coverage and misfiling are measured beside it."""

from __future__ import annotations

import pytest
from migr_rt.training.judge import (
    CueJudge,
    ExplanationJudge,
    GroundingReport,
    coverage,
    explanation_parts,
    grounding,
    grounding_report,
    misplaced_cues,
    stated_cues,
)
from migr_rt.training.synth.cues import CUES_BY_NAME

from migr_rt.labels import DFEW_LABELS, MAFW_LABELS
from migr_rt.traces import parse_trace


def trace(visual: str | None = None, audio: str | None = None, summary: str | None = None, first: str = "visual",
          answer: str = "angry") -> str:  # fmt: skip
    """A trace with the given segments (None = segment left out), ``first`` segment first."""
    segs = {"visual": visual, "audio": audio}
    order = [first] + [m for m in ("visual", "audio") if m != first]
    body = "".join(f"<{m}>{segs[m]}</{m}>" for m in order if segs[m] is not None)
    if summary is not None:
        body += f"<summary>{summary}</summary>"
    return f"<think>{body}</think><answer>{answer}</answer>"


# ------------------------------------------------------------------------------------------- CueJudge


def test_cue_judge_is_an_explanation_judge_with_dfew_labels_by_default() -> None:
    judge = CueJudge()
    assert isinstance(judge, ExplanationJudge)
    assert judge.labels == DFEW_LABELS
    assert set(judge.emotion_scores("")) == set(DFEW_LABELS)
    assert set(CueJudge(MAFW_LABELS).emotion_scores("lowered brows")) == set(MAFW_LABELS)
    with pytest.raises(ValueError):
        CueJudge(())


def test_scores_are_support_times_intensity() -> None:
    judge = CueJudge()
    scores = judge.emotion_scores("slightly lowered brows, strongly raised upper lip")
    # lowered brows: angry 1.0, disgust 0.4 at 0.35; raised upper lip: disgust 1.0, angry 0.2 at 1.0
    assert scores["angry"] == pytest.approx(0.35 * 1.0 + 0.2)
    assert scores["disgust"] == pytest.approx(0.35 * 0.4 + 1.0)
    assert scores["happy"] == 0.0
    assert judge.implied_emotion("slightly lowered brows, strongly raised upper lip") == "disgust"
    # Same cues, intensities swapped: the judgement follows the intensity words.
    assert judge.implied_emotion("strongly lowered brows, slightly raised upper lip") == "angry"
    # No intensity word = weight 1.0; matching is case-insensitive.
    assert judge.emotion_scores("Lowered Brows")["angry"] == pytest.approx(1.0)


def test_naming_a_label_implies_nothing() -> None:
    judge = CueJudge()
    assert judge.implied_emotion("the answer is clearly angry") is None
    assert all(v == 0.0 for v in judge.emotion_scores("the answer is clearly angry").values())
    assert judge.implied_emotion("") is None
    assert judge.implied_emotion("happy sad fear surprise neutral disgust") is None


def test_appending_label_words_does_not_change_the_judgement() -> None:
    judge = CueJudge()
    text = "strongly downturned mouth corners, clearly drooping eyelids, slightly quiet voice"
    assert judge.implied_emotion(text) == "sad"
    assert judge.implied_emotion(text + " happy happy happy") == "sad"
    assert judge.emotion_scores(text + " happy happy happy") == judge.emotion_scores(text)


def test_ties_go_to_the_first_label_in_label_order() -> None:
    text = "raised cheeks, lowered brows"  # happy 1.0 and angry 1.0 (+ disgust 0.4)
    assert CueJudge().implied_emotion(text) == "angry"
    assert CueJudge(tuple(reversed(DFEW_LABELS))).implied_emotion(text) == "happy"
    # A tie that only exists up to float rounding is still a tie: fear 0.35 * (0.7 + 0.2) vs surprise 0.35 * 0.9.
    text = "slightly knitted brows, slightly rounded open mouth"
    scores = CueJudge().emotion_scores(text)
    assert scores["fear"] < scores["surprise"] and scores["fear"] == pytest.approx(scores["surprise"])
    assert CueJudge().implied_emotion(text) == "fear"


def test_labels_outside_the_judge_label_set_are_ignored() -> None:
    judge = CueJudge(("happy", "sad"))
    assert judge.emotion_scores("lowered brows") == {"happy": 0.0, "sad": 0.0}
    assert judge.implied_emotion("lowered brows") is None
    assert judge.implied_emotion("lowered brows, slightly quiet voice") == "sad"


# ------------------------------------------------------------------------------------------- parts


def test_stated_cues_are_read_part_by_part() -> None:
    parsed = parse_trace(trace(visual="knitted brows", audio="lowered", summary="brows drawn"), DFEW_LABELS)
    assert [(m, t) for m, t in explanation_parts(parsed)] == [
        ("visual", "knitted brows"), ("audio", "lowered"), (None, "brows drawn")
    ]  # fmt: skip
    # "lowered" ending one segment and "brows" starting the next never make "lowered brows".
    parsed = parse_trace(trace(visual="lowered", audio="brows, loud voice"), DFEW_LABELS)
    assert [(m, c.name) for m, c in stated_cues(parsed)] == [("audio", "voice_loud")]


# ------------------------------------------------------------------------------------------- grounding

ACTUAL = {"visual": {"brows_lowered", "eyes_narrowed"}, "audio": {"voice_loud", "voice_trembling"}}


def test_grounding_is_the_share_of_distinct_stated_cues_present() -> None:
    parsed = parse_trace(
        trace(visual="strongly lowered brows, clearly wrinkled nose", audio="loud voice",
              summary="dark muffled timbre"), DFEW_LABELS)  # fmt: skip
    report = grounding_report(parsed, ACTUAL)
    assert isinstance(report, GroundingReport)
    assert [c.name for c in report.stated] == ["brows_lowered", "nose_wrinkled", "voice_loud", "timbre_dark"]
    assert [c.name for c in report.ungrounded] == ["nose_wrinkled", "timbre_dark"]
    assert grounding(parsed, ACTUAL) == pytest.approx(2 / 4)


def test_repeating_a_true_cue_does_not_dilute_an_invented_one() -> None:
    parsed = parse_trace(trace(visual="widened eyes", audio="loud voice, loud voice, loud voice, loud voice"))
    assert grounding(parsed, ACTUAL) == pytest.approx(1 / 2)


def test_a_cue_is_grounded_by_its_own_modality_only() -> None:
    # A voice cue written under <visual> is still true of the clip (misfiling is reported separately) ...
    parsed = parse_trace(trace(visual="trembling voice"))
    assert grounding(parsed, ACTUAL) == 1.0
    assert misplaced_cues(parsed) == 1
    # ... but a name listed under the wrong modality does not make it true.
    assert grounding(parsed, {"visual": {"voice_trembling"}}) == 0.0
    assert grounding_report(parsed, {"visual": {"voice_trembling"}}).ungrounded == (CUES_BY_NAME["voice_trembling"],)


def test_grounding_is_none_when_nothing_is_stated() -> None:
    assert grounding(parse_trace(trace(visual="the answer is angry", summary="angry")), ACTUAL) is None
    assert grounding(parse_trace(""), ACTUAL) is None
    assert grounding_report(parse_trace("garbage"), ACTUAL).rate is None
    # Summary cues are claims too.
    assert grounding(parse_trace(trace(visual="x", summary="raised cheeks")), ACTUAL) == 0.0


# ------------------------------------------------------------------------------------------- coverage


def test_coverage_counts_present_modalities_described_by_their_own_cues() -> None:
    both = ("visual", "audio")
    assert coverage(parse_trace(trace(visual="lowered brows", audio="loud voice")), both) == 1.0
    assert coverage(parse_trace(trace(visual="lowered brows")), both) == 0.5
    assert coverage(parse_trace(trace(visual="lowered brows", audio="")), both) == 0.5
    # An audio segment that only describes the face does not cover audio.
    assert coverage(parse_trace(trace(visual="lowered brows", audio="narrowed eyes")), both) == 0.5
    assert coverage(parse_trace(trace(visual="loud voice", audio="lowered brows")), both) == 0.0
    # The summary does not stand in for a segment.
    assert coverage(parse_trace(trace(visual="lowered brows", summary="loud voice")), both) == 0.5
    assert coverage(parse_trace(trace(visual="lowered brows")), ("visual",)) == 1.0
    assert coverage(parse_trace(""), both) == 0.0
    assert coverage(parse_trace(""), ()) == 1.0


# ------------------------------------------------------------------------------------------- misplaced


def test_misplaced_cues_counts_each_statement_in_the_other_modality_segment() -> None:
    parsed = parse_trace(
        trace(visual="trembling voice, lowered brows, slightly loud voice", audio="raised cheeks, fast speech rate",
              summary="loud voice and raised cheeks"))  # fmt: skip
    assert misplaced_cues(parsed) == 3  # summary exempt
    assert misplaced_cues(parse_trace(trace(visual="lowered brows", audio="loud voice"))) == 0
    assert misplaced_cues(parse_trace("")) == 0
