"""Every reward term on hand-checked traces, adversarial generations included, and the weighted combiner."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from migr_rt.training.rewards import (
    LENGTH_BUDGET,
    TERMS,
    RewardContext,
    RewardWeights,
    accuracy_reward,
    applicable,
    coherence_reward,
    consistency_reward,
    context_from_record,
    coverage_reward,
    first_segment_reward,
    format_reward,
    grounding_reward,
    intensity_reward,
    score,
)
from migr_rt.training.synth.corpus import SynthConfig, render_clip

from migr_rt.labels import DFEW_LABELS
from migr_rt.traces import build_trace, modality_order, parse_trace, summary_problem

CTX = RewardContext(
    label="angry",
    labels=DFEW_LABELS,
    dominant="audio",
    present=("visual", "audio"),
    actual_cues={"visual": {"brows_lowered", "eyes_narrowed"}, "audio": {"voice_loud", "timbre_harsh"}},
)
# Default MIGR weights: accuracy 1, format .25, first_segment .5, consistency 1, grounding .5, coverage .5,
# coherence .25 -> total weight 4 (intensity is off by default).
W = RewardWeights()
SUM_W = 4.0
NAMES = ("accuracy", "format", "first_segment", "consistency", "grounding", "coverage", "coherence")
#: The strength of each shown cue of CTX, as GOOD states it.
STRENGTHS = {"timbre_harsh": 1.0, "voice_loud": 0.7, "brows_lowered": 0.7, "eyes_narrowed": 0.35}

GOOD = (
    "<think><audio>strongly harsh strained timbre, clearly loud voice</audio>"
    "<visual>clearly lowered brows, slightly narrowed eyes</visual>"
    "<summary>the audio evidence decides: strongly harsh strained timbre</summary></think><answer>angry</answer>"
)


def terms_of(text: str, ctx: RewardContext = CTX) -> dict[str, float]:
    parsed = parse_trace(text, ctx.labels)
    return {name: TERMS[name](parsed, ctx) for name in NAMES}


def expected_total(values: dict[str, float], weights: RewardWeights = W) -> float:
    ws = dict(weights.items())
    return sum(ws[k] * v for k, v in values.items()) / sum(ws[k] for k in values)


# ------------------------------------------------------------------------------------------- adversarial

LONG_BODY = "strongly harsh strained timbre, " * 160
LONG = (
    f"<think><audio>{LONG_BODY}</audio><visual>clearly lowered brows</visual>"
    "<summary>the audio evidence decides: strongly harsh strained timbre</summary></think><answer>angry</answer>"
)
# 162 statements, 159 repeats (the summary's one restatement is allowed); explanation = the three parts joined.
LONG_COHERENCE = (3 / 162) * LENGTH_BUDGET / (
    len(LONG_BODY.strip()) + 1 + len("clearly lowered brows") + 1 + len("the audio evidence decides: strongly harsh strained timbre")
)  # fmt: skip

#            text, (accuracy, format, first_segment, consistency, grounding, coverage, coherence)
CASES = {
    "ground_truth_like": (GOOD, (1, 1, 1, 1, 1, 1, 1)),
    "empty_string": ("", (0, 0, 0, 0, 0, 0, 0)),
    "garbage": ("lorem ipsum <<>> ??? </think <answer \x00\x01 ###", (0, 0, 0, 0, 0, 0, 0)),
    "no_tags_at_all": ("strongly harsh strained timbre, clearly loud voice, so angry", (0, 0, 0, 0, 0, 0, 0)),
    "label_copied_no_cues": (
        "<think><audio>the answer is angry</audio><visual>angry angry</visual><summary>angry</summary></think>"
        "<answer>angry</answer>",
        (1, 0.5, 0, 0, 0, 0, 0),  # "angry" is not a summary sentence
    ),
    # A summary sentence assembled from the word pieces of "audio" and "visual": only format notices.
    "summary_modality_garbled": (GOOD.replace("the audio evidence", "the aual evidence"), (1, 0.5, 1, 1, 1, 1, 1)),
    "summary_verb_stuttered": (
        GOOD.replace("the audio evidence decides: strongly harsh strained timbre",
                     "the visual and audio evidence together decidecide"),
        (1, 0.5, 1, 1, 1, 1, 1),
    ),
    # Concluding that the other modality decides is a claim, not a format fault (first_segment scores the order).
    "summary_names_the_other_modality": (
        GOOD.replace("the audio evidence decides: strongly harsh strained timbre",
                     "the visual evidence decides: clearly lowered brows"),
        (1, 1, 1, 1, 1, 1, 1),
    ),
    "missing_think_close": (
        "<think><audio>loud voice</audio><visual>lowered brows</visual><summary>so</summary><answer>angry</answer>",
        (1, 0.5, 1, 1, 1, 1, 1),
    ),
    "empty_segments": (
        "<think><audio></audio><visual>lowered brows</visual><summary></summary></think><answer>angry</answer>",
        (1, 0.5, 0, 1, 1, 0.5, 1),
    ),
    "repeated_tags": (
        "<think><audio>loud voice</audio><audio>loud voice</audio><visual>lowered brows</visual></think>"
        "<answer>angry</answer>",
        (1, 0.5, 1, 1, 1, 1, 2 / 3),
    ),
    "answer_not_a_label": (GOOD.replace("<answer>angry", "<answer>furious"), (0, 0, 1, 0, 1, 1, 1)),
    "answer_missing": (GOOD.replace("<answer>angry</answer>", ""), (0, 0, 1, 0, 1, 1, 1)),
    "text_after_answer": (GOOD + " and some rambling", (1, 0.5, 1, 1, 1, 1, 1)),
    "two_answers": (GOOD + "<answer>sad</answer>", (1, 0.5, 1, 1, 1, 1, 1)),
    "explanation_argues_sad": (
        "<think><audio>strongly quiet voice, clearly dark muffled timbre</audio><visual>strongly drooping eyelids"
        "</visual></think><answer>angry</answer>",
        (1, 0.5, 1, 0, 0, 1, 1),  # no summary: format 0.5 (so is every case below without one)
    ),
    "invented_cues": (
        "<think><audio>loud voice, dark muffled timbre</audio><visual>lowered brows, wrinkled nose</visual></think>"
        "<answer>angry</answer>",
        (1, 0.5, 1, 1, 0.5, 1, 1),
    ),
    "cues_in_wrong_segments": (
        "<think><audio>lowered brows</audio><visual>loud voice</visual></think><answer>angry</answer>",
        (1, 0.5, 0, 1, 1, 0, 0),
    ),
    "very_long_repeated_cues": (LONG, (1, 1, 1, 1, 1, 1, LONG_COHERENCE)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_term_on_adversarial_generations(case: str) -> None:
    text, want = CASES[case]
    want_terms = dict(zip(NAMES, want))
    assert terms_of(text) == pytest.approx(want_terms, abs=1e-9)
    total, terms = score([text], [CTX], W)
    assert set(terms) == set(NAMES)
    for name in NAMES:
        assert terms[name][0].item() == pytest.approx(want_terms[name], abs=1e-6), name
    assert total[0].item() == pytest.approx(expected_total(want_terms), abs=1e-6)
    assert 0.0 <= total[0].item() <= 1.0


def test_hand_computed_totals() -> None:
    texts = [CASES[c][0] for c in ("label_copied_no_cues", "empty_segments", "invented_cues", "cues_in_wrong_segments")]
    total, _ = score(texts, [CTX] * len(texts), W)
    assert total.tolist() == pytest.approx([1.125 / SUM_W, 3.125 / SUM_W, 3.625 / SUM_W, 2.625 / SUM_W], abs=1e-6)


def test_long_output_is_penalised_but_scored() -> None:
    assert 0 < LONG_COHERENCE < 0.01
    total, _ = score([LONG, "<answer>angry</answer>" * 2000], [CTX, CTX], W)
    assert total[0] < 1.0 and 0.0 <= total[1] <= 1.0


# ------------------------------------------------------------------------------------------- single terms


def test_accuracy_is_exact_match_of_the_answer() -> None:
    assert accuracy_reward(parse_trace(GOOD, DFEW_LABELS), CTX) == 1.0
    assert accuracy_reward(parse_trace(GOOD.replace(">angry<", "> angry <")), CTX) == 1.0  # answer is stripped
    assert accuracy_reward(parse_trace(GOOD.replace(">angry<", ">Angry<")), CTX) == 0.0
    assert accuracy_reward(parse_trace(GOOD.replace(">angry<", ">sad<")), CTX) == 0.0


def test_format_has_three_levels() -> None:
    p = parse_trace
    assert format_reward(p(GOOD, DFEW_LABELS), CTX) == 1.0
    # Usable but without the summary a rationale owes (a model must not escape the summary check by dropping it).
    assert format_reward(p("<think><visual>x</visual></think><answer>sad</answer>  ", DFEW_LABELS), CTX) == 0.5
    # Usable but not well formed: answer is a label and some segment has text.
    assert format_reward(p("<visual>x</visual><answer>sad</answer>", DFEW_LABELS), CTX) == 0.5
    # No non-empty segment, or an answer outside the label set: unusable.
    assert format_reward(p("<think><visual></visual></think><answer>sad</answer>", DFEW_LABELS), CTX) == 0.0
    assert format_reward(p("<think></think><answer>sad</answer>", DFEW_LABELS), CTX) == 0.0
    assert format_reward(p("<think><visual>x</visual></think><answer>glee</answer>", DFEW_LABELS), CTX) == 0.0
    # A well-formed trace whose summary sentence is broken is merely usable.
    assert format_reward(p(GOOD.replace("audio evidence", "visudio evidence"), DFEW_LABELS), CTX) == 0.5


@pytest.mark.parametrize("dominant", [None, "visual", "audio"])
@pytest.mark.parametrize("first", ["visual", "audio"])
@pytest.mark.parametrize("shown", [("visual", "audio"), ("visual",), ("audio",)])
def test_every_summary_the_trace_writer_makes_is_sound(dominant, first, shown) -> None:
    cues = {"visual": "clearly lowered brows, slightly narrowed eyes", "audio": "clearly loud voice"}
    descriptions = {m: (cues[m] if m in shown else "") for m in ("visual", "audio")}
    parsed = parse_trace(build_trace(descriptions, modality_order(first), dominant, "angry"), DFEW_LABELS)
    assert parsed.summary and summary_problem(parsed) is None, parsed.summary


@pytest.mark.parametrize("summary, problem", [
    ("the aual evidence decides: clearly loud voice", "summary names 'aual', not a modality"),
    ("the visudio evidence decides", "summary names 'visudio', not a modality"),
    ("the visual and aual evidence together decide", "summary names 'aual', not a modality"),
    ("the audio and audio evidence together decide", "summary names a modality twice"),
    ("the visual and audio evidence together decidecide", "neither"),
    ("theidence decides: clearly raised brows", "neither"),
    ("the audio evidence decides:", "neither"),
    ("angry", "neither"),
    ("", "empty summary"),
])
def test_broken_summary_sentences_are_named(summary: str, problem: str) -> None:
    parsed = parse_trace(GOOD.replace("the audio evidence decides: strongly harsh strained timbre", summary))
    assert parsed.well_formed  # the tags are fine: only the sentence is broken
    assert problem in summary_problem(parsed)


def test_a_missing_summary_is_a_fault_only_where_one_is_owed() -> None:
    parsed = parse_trace("<think><audio>clearly loud voice</audio></think><answer>angry</answer>")
    assert parsed.well_formed and summary_problem(parsed) == "no summary"
    assert summary_problem(parsed, required=False) is None  # a base model's cue description


def test_first_segment_must_be_the_dominant_modality_stating_its_own_cue() -> None:
    visual_first = GOOD.replace("<audio>", "<A>").replace("</audio>", "</A>")  # no audio segment: visual first
    assert first_segment_reward(parse_trace(GOOD), CTX) == 1.0
    assert first_segment_reward(parse_trace(visual_first), CTX) == 0.0
    assert first_segment_reward(parse_trace(GOOD), dataclasses.replace(CTX, dominant="visual")) == 0.0
    assert first_segment_reward(parse_trace("<think><audio>the voice</audio></think>"), CTX) == 0.0
    assert first_segment_reward(parse_trace("<think><audio>narrowed eyes</audio></think>"), CTX) == 0.0
    assert first_segment_reward(parse_trace("<think><audio>slightly loud voice</audio></think>"), CTX) == 1.0
    assert first_segment_reward(parse_trace("<answer>angry</answer>"), CTX) == 0.0
    unknown = dataclasses.replace(CTX, dominant=None)
    assert first_segment_reward(parse_trace(GOOD), unknown) == 0.0
    assert not applicable("first_segment", unknown) and applicable("first_segment", CTX)


def test_first_segment_of_free_text_descriptions_asks_for_a_non_empty_dominant_opening() -> None:
    # a real dataset described in words the cue vocabulary does not know: no cue can be asked for
    free = RewardContext(label="angry", dominant="audio", vocabulary=False)
    assert first_segment_reward(parse_trace("<think><audio>a harsh shout</audio><visual>a glare</visual></think>"), free) == 1.0
    assert first_segment_reward(parse_trace("<think><audio>slightly loud voice</audio></think>"), free) == 1.0
    assert first_segment_reward(parse_trace("<think><visual>a glare</visual><audio>a shout</audio></think>"), free) == 0.0
    assert first_segment_reward(parse_trace("<think><audio> </audio><visual>a glare</visual></think>"), free) == 0.0
    # the other modality's evidence under the dominant tag is still caught
    assert first_segment_reward(parse_trace("<think><audio>narrowed eyes</audio></think>"), free) == 0.0
    # where the vocabulary applies, words outside it earn nothing
    assert first_segment_reward(parse_trace("<think><audio>a harsh shout</audio></think>"), CTX) == 0.0


def test_consistency_credits_agreement_only_with_a_correct_answer() -> None:
    sad = "<think><visual>strongly drooping eyelids</visual></think><answer>sad</answer>"
    # A wrong answer explained consistently earns nothing: otherwise bending the answer toward the
    # explanation would pay as much as a right answer with an inconsistent explanation.
    assert consistency_reward(parse_trace(sad), CTX) == 0.0
    assert consistency_reward(parse_trace(sad), RewardContext(label="sad")) == 1.0
    assert accuracy_reward(parse_trace(sad), CTX) == 0.0
    assert consistency_reward(parse_trace(sad.replace(">sad<", ">happy<")), CTX) == 0.0
    assert consistency_reward(parse_trace(sad.replace("<answer>sad</answer>", "")), CTX) == 0.0
    # Label words stuffed into the explanation do not buy agreement.
    stuffed = "<think><visual>strongly drooping eyelids, happy happy happy</visual></think><answer>happy</answer>"
    assert consistency_reward(parse_trace(stuffed), CTX) == 0.0


def test_consistency_uses_the_given_judge_and_the_context_labels() -> None:
    class Always:
        def implied_emotion(self, explanation: str) -> str | None:
            return "angry"

        def emotion_scores(self, explanation: str) -> dict[str, float]:
            return {"angry": 1.0}

    text = CASES["explanation_argues_sad"][0]
    assert consistency_reward(parse_trace(text), CTX, Always()) == 1.0
    _, terms = score([text], [CTX], W, judge=Always())
    assert terms["consistency"].tolist() == [1.0]
    # The default judge only weighs the context's labels: "lowered brows" argues angry, absent from this set.
    two = RewardContext(label="sad", labels=("happy", "sad"))
    assert consistency_reward(parse_trace("<visual>lowered brows</visual><answer>sad</answer>"), two) == 0.0
    argued = parse_trace("<visual>lowered brows, quiet voice</visual><answer>sad</answer>")
    assert consistency_reward(argued, two) == 1.0


def test_grounding_reward() -> None:
    assert grounding_reward(parse_trace(CASES["invented_cues"][0]), CTX) == 0.5
    assert grounding_reward(parse_trace(CASES["label_copied_no_cues"][0]), CTX) == 0.0  # saying nothing scores 0
    unknown = dataclasses.replace(CTX, actual_cues={})
    assert grounding_reward(parse_trace(GOOD), unknown) == 0.0
    assert not applicable("grounding", unknown) and applicable("grounding", CTX)


def test_coverage_reward() -> None:
    visual_only = parse_trace("<visual>lowered brows</visual>")
    assert coverage_reward(visual_only, CTX) == 0.5
    assert coverage_reward(visual_only, dataclasses.replace(CTX, present=("visual",))) == 1.0
    nothing = dataclasses.replace(CTX, present=())
    assert coverage_reward(parse_trace(GOOD), nothing) == 0.0
    assert not applicable("coverage", nothing) and applicable("coverage", CTX)


def test_coherence_penalises_repeats_echoes_misfiling_and_length() -> None:
    def coh(body: str) -> float:
        return coherence_reward(parse_trace(f"<think>{body}</think><answer>angry</answer>"), CTX)

    base = "<audio>loud voice, harsh strained timbre</audio><visual>lowered brows</visual>"
    assert coh(base) == 1.0
    assert coh(base + "<summary>the audio evidence decides: loud voice</summary>") == 1.0  # one restatement allowed
    assert coh(base + "<summary>loud voice and harsh strained timbre</summary>") == pytest.approx(4 / 5)
    assert coh(base + "<summary>Lowered brows.</summary>") == pytest.approx(3 / 4)  # echoes the visual segment
    assert coh("<audio>loud voice, slightly loud voice</audio><visual>lowered brows</visual>") == pytest.approx(2 / 3)
    # Misfiled and repeated/echoed statements count once each.
    assert coh("<visual>loud voice</visual><audio>loud voice</audio>") == 0.0
    assert coh("<audio>loud voice</audio><visual>loud voice, lowered brows</visual>") == pytest.approx(2 / 3)
    assert coh("<audio>just talking</audio>") == 0.0  # no statement, no credit
    filler = "<audio>loud voice " + "x" * 1190 + "</audio>"
    assert coh(filler) == pytest.approx(LENGTH_BUDGET / len("loud voice " + "x" * 1190))


def test_intensity_reward_asks_each_shown_cue_to_be_stated_as_strong_as_the_input_shows_it() -> None:
    ctx = dataclasses.replace(CTX, intensities=STRENGTHS)

    def rate(text: str, c: RewardContext = ctx) -> float:
        return intensity_reward(parse_trace(text), c)

    assert rate(GOOD) == 1.0  # four cues (the timbre twice, with the summary), each with the input's word
    assert rate(GOOD.replace("slightly narrowed", "strongly narrowed")) == 0.75  # overstated
    assert rate(GOOD.replace("slightly narrowed", "narrowed")) == 0.75  # a bare phrase weighs 1.0 ...
    assert rate(GOOD.replace("strongly harsh", "harsh")) == 1.0  # ... which is right for a strong cue
    assert rate(GOOD.replace("clearly loud", "slightly loud")) == 0.75  # understated
    assert rate(GOOD.replace(", slightly narrowed eyes", "")) == 0.75  # left out costs as much as misstated
    assert rate(GOOD.replace("slightly narrowed eyes", "no narrowed eyes")) == 0.75  # a negated cue is not stated
    # every statement of a cue must be right: the summary restating the timbre as slight loses it
    assert rate(GOOD.replace("decides: strongly harsh", "decides: slightly harsh")) == 0.75
    assert rate(GOOD.replace("</visual>", ", strongly narrowed eyes</visual>")) == 0.75
    assert rate(CASES["label_copied_no_cues"][0]) == 0.0  # saying nothing scores 0
    # where a cue is stated is coverage's and coherence's business: the summary or the wrong segment counts here
    assert rate("<think><visual>strongly harsh strained timbre, clearly loud voice</visual><summary>clearly lowered "
                "brows, slightly narrowed eyes</summary></think><answer>angry</answer>") == 1.0
    # only the cues whose strength the input gives are asked about
    partial = dataclasses.replace(CTX, intensities={"eyes_narrowed": 0.35})
    assert rate(GOOD.replace("clearly loud", "slightly loud"), partial) == 1.0
    assert rate("<visual>lowered brows</visual><answer>angry</answer>", partial) == 0.0
    assert intensity_reward(parse_trace(GOOD), CTX) == 0.0
    assert not applicable("intensity", CTX) and applicable("intensity", ctx)


def test_intensity_weight_enters_the_total_only_where_strengths_are_known() -> None:
    ctx = dataclasses.replace(CTX, intensities=STRENGTHS)
    weights = dataclasses.replace(W, intensity=0.5)
    overstated = GOOD.replace("slightly narrowed", "strongly narrowed")
    total, terms = score([GOOD, overstated, overstated], [ctx, ctx, CTX], weights)
    assert terms["intensity"].tolist() == pytest.approx([1.0, 0.75, 0.0])
    assert total[0].item() == pytest.approx(1.0)
    # overstating the eyes costs only the intensity term; without known strengths it costs nothing
    assert total[1].item() == pytest.approx(1.0 - 0.5 * 0.25 / (SUM_W + 0.5))
    assert total[2].item() == pytest.approx(1.0)
    assert "intensity" not in score([GOOD], [ctx], W)[1]


def test_terms_are_named_pure_functions_in_unit_range() -> None:
    assert tuple(TERMS) == tuple(f.name for f in dataclasses.fields(RewardWeights))
    assert tuple(W.active()) == NAMES and set(TERMS) - set(NAMES) == {"intensity"}
    ctx = dataclasses.replace(CTX, intensities=STRENGTHS)
    for name, fn in TERMS.items():
        assert fn.__name__ == f"{name}_reward"
        for text, _ in CASES.values():
            parsed = parse_trace(text, CTX.labels)
            first = fn(parsed, ctx)
            assert 0.0 <= first <= 1.0 and fn(parsed, ctx) == first, (name, text[:40])


# ------------------------------------------------------------------------------------------- weights, combiner


def test_default_and_baseline_weights() -> None:
    assert dict(W.items()) == {"accuracy": 1.0, "format": 0.25, "first_segment": 0.5, "consistency": 1.0,
                               "grounding": 0.5, "intensity": 0.0, "coverage": 0.5, "coherence": 0.25}  # fmt: skip
    assert sum(w for _, w in W.items()) == SUM_W
    base = RewardWeights.baseline()
    assert base.active() == ["accuracy", "format"] and base.accuracy == base.format == 1.0
    with pytest.raises(ValueError):
        RewardWeights(accuracy=-1.0)
    with pytest.raises(ValueError):
        RewardWeights(accuracy=float("nan"))
    with pytest.raises(ValueError):
        RewardWeights(**dict.fromkeys(NAMES, 0.0))
    with pytest.raises(ValueError):
        RewardWeights(intensity=-0.5)


def test_baseline_scores_only_accuracy_and_format() -> None:
    texts = [GOOD, CASES["label_copied_no_cues"][0], CASES["missing_think_close"][0], ""]
    total, terms = score(texts, [CTX] * 4, RewardWeights.baseline())
    assert list(terms) == ["accuracy", "format"]
    assert total.tolist() == pytest.approx([1.0, 0.75, 0.75, 0.0])


def test_zero_weight_terms_are_skipped() -> None:
    summary = "<summary>the audio evidence decides: loud voice</summary>"
    text = CASES["invented_cues"][0].replace("</think>", summary + "</think>")
    total, terms = score([text], [CTX], dataclasses.replace(W, grounding=0.0))
    assert "grounding" not in terms and total.item() == pytest.approx(1.0)


def test_inapplicable_terms_leave_the_normalisation() -> None:
    unknown = RewardContext(label="angry")  # dominant, present and actual cues all unknown
    text = CASES["cues_in_wrong_segments"][0]
    total, terms = score([text, text], [unknown, CTX], W)
    assert terms["first_segment"].tolist() == [0.0, 0.0]
    assert terms["grounding"].tolist() == [0.0, 1.0]
    # unknown: (accuracy 1 + format .25 x .5 (no summary) + consistency 1 + coherence 0) / (1 + .25 + 1 + .25)
    assert total.tolist() == pytest.approx([2.125 / 2.5, 2.625 / SUM_W])


def test_score_shapes_and_errors() -> None:
    total, terms = score([], [], W)
    assert total.shape == (0,) and all(t.shape == (0,) for t in terms.values())
    total, terms = score([GOOD, ""], [CTX, CTX], W)
    assert total.dtype == torch.float32 and total.shape == (2,) and terms["accuracy"].shape == (2,)
    with pytest.raises(ValueError):
        score([GOOD], [CTX, CTX], W)


def test_context_validation() -> None:
    with pytest.raises(ValueError):
        RewardContext(label="glee")
    with pytest.raises(ValueError):
        RewardContext(label="sad", dominant="smell")
    ctx = RewardContext(label="sad", labels=["sad", "happy"], present=["audio"], actual_cues={"audio": ["voice_quiet"]})
    assert ctx.labels == ("sad", "happy") and ctx.present == ("audio",)
    assert ctx.actual_cues["audio"] == frozenset({"voice_quiet"})
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="intensities"):
            RewardContext(label="sad", intensities={"voice_quiet": bad})


# ------------------------------------------------------------------------------------------- real clips


@pytest.fixture(scope="module")
def records() -> list[dict]:
    """Two rendered clips per DFEW label (seed 3): real manifest records with real cue descriptions."""
    config = SynthConfig(n=14, seed=3)
    return [render_clip(config, i).record for i in range(14)]


def gt_trace(record: dict, first: str | None = None, descriptions: dict | None = None) -> str:
    d = descriptions or {"visual": record["visual_text"], "audio": record["audio_text"]}
    return build_trace(d, modality_order(first or record["dominant"]), record["dominant"], record["label"])


def test_ground_truth_traces_score_the_maximum(records: list[dict]) -> None:
    contexts = [context_from_record(r, dominant=r["dominant"]) for r in records]
    assert all(c.present == ("visual", "audio") for c in contexts)
    for r, c in zip(records, contexts):  # every cue of the record, with the weight of its description's word
        assert set(c.intensities) == {cue["name"] for m in ("visual", "audio") for cue in r[m]["cues"]}
    total, terms = score([gt_trace(r) for r in records], contexts, dataclasses.replace(W, intensity=0.5))
    for name in ("accuracy", "format", "first_segment", "grounding", "intensity", "coverage", "coherence"):
        assert terms[name].tolist() == [1.0] * len(records), name
    assert terms["consistency"].mean().item() >= 0.9
    assert torch.allclose(total[terms["consistency"] == 1.0], torch.tensor(1.0))


def test_visual_first_trace_of_audio_dominant_clip_loses_only_first_segment(records: list[dict]) -> None:
    clip = next(r for r in records if r["kind"] == "audio_dominant")
    ctx = context_from_record(clip, dominant=clip["dominant"])
    (good, bad), terms = score([gt_trace(clip), gt_trace(clip, first="visual")], [ctx, ctx], W)
    assert good.item() == pytest.approx(1.0)
    assert bad.item() == pytest.approx(1.0 - W.first_segment / SUM_W)
    changed = [name for name, t in terms.items() if t[0] != t[1]]
    assert changed == ["first_segment"]


def test_explanation_arguing_for_another_emotion_loses_consistency(records: list[dict]) -> None:
    clip = next(r for r in records if r["kind"] == "audio_dominant")
    other = next(r for r in records if r["label"] not in (clip["label"], "neutral") and r["kind"] == "consistent")
    ctx = context_from_record(clip, dominant=clip["dominant"])
    d = {"visual": other["visual_text"], "audio": other["audio_text"]}
    (good, bad), terms = score([gt_trace(clip), gt_trace(clip, descriptions=d)], [ctx, ctx], W)
    assert terms["consistency"].tolist() == [1.0, 0.0]
    assert terms["accuracy"].tolist() == [1.0, 1.0]
    assert bad < good
