"""Evaluation: metric arithmetic on hand-written traces, the drift measurement, end to end and the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from migr_rt.training.base_recipe import load_or_extract
from migr_rt.training.evaluation import (
    EvalConfig,
    _teacher_forced,
    drift_curve,
    evaluate_reasoning,
    modality_attention,
    reasoning_metrics,
    reasoning_prompt,
    subset_metrics,
    window_record,
)
from migr_rt.training.sources import open_source
from migr_rt.training.synth.corpus import SynthConfig, generate_corpus
from model_fixtures import random_inputs

from migr_rt.cli import main
from migr_rt.generate import GenerationConfig, generate
from migr_rt.labels import DFEW_LABELS
from migr_rt.mi import score_modality_importance
from migr_rt.model import save_checkpoint
from migr_rt.traces import parse_trace

LABELS = list(DFEW_LABELS)
BOTH = ["visual", "audio"]


def trace(segments: str, answer: str, summary: str | None = None) -> str:
    summ = f"<summary>{summary}</summary>" if summary else ""
    return f"<think>{segments}{summ}</think><answer>{answer}</answer>"


# (text, label, visible, meta): expected values below are worked out by hand from the cue vocabulary
CASES = [
    # r1: correct, consistent (angry cues), opens with the true dominant modality, fully grounded
    (trace("<visual>lowered brows</visual><audio>harsh strained timbre</audio>", "angry",
           "the visual evidence decides: lowered brows"), "angry", BOTH,
     {"kind": "consistent", "dominant": "visual", "one_sided": False,
      "cues": {"visual": ["brows_lowered"], "audio": ["timbre_harsh"]}}),
    # r2: correct answer "sad" but the cues argue for happy (inconsistent); opens with the wrong modality;
    #     one of its two cues (melodic intonation) is invented -> grounding 0.5
    (trace("<visual>raised cheeks</visual><audio>lively melodic intonation</audio>", "sad"), "sad", BOTH,
     {"kind": "conflicting", "dominant": "audio", "one_sided": False,
      "cues": {"visual": ["cheeks_raised"], "audio": ["voice_quiet"]}}),
    # r3: correct, but the explanation only names the label: no cue -> implied None -> inconsistent;
    #     one-sided, opens with the dominant audio; grounding not applicable; audio not covered -> 0.0
    (trace("<audio>the answer is clearly fear</audio>", "fear"), "fear", BOTH,
     {"kind": "ambiguous", "dominant": "audio", "one_sided": True,
      "cues": {"visual": [], "audio": ["voice_trembling"]}}),
    # r4: invalid answer; audio hidden, so its dominance cannot be agreed with (excluded) and
    #     its cues are not in the input the model saw
    (trace("<visual>relaxed facial muscles</visual>", "bored"), "neutral", ["visual"],
     {"kind": "consistent", "dominant": "audio", "one_sided": True,
      "cues": {"visual": ["face_relaxed"], "audio": ["voice_steady"]}}),
    # r5: wrong (valid) answer, opens with the dominant audio, grounded; its summary's modality word is garbled
    (trace("<audio>loud voice</audio><visual>upturned mouth corners</visual>", "happy",
           "the aual evidence decides: loud voice"), "angry", BOTH,
     {"kind": "conflicting", "dominant": "audio", "one_sided": False,
      "cues": {"visual": ["mouth_corners_up"], "audio": ["voice_loud"]}}),
    # r6: real data (no meta): correct and consistent, describes the face only -> coverage 0.5
    (trace("<visual>raised cheeks</visual>", "happy"), "happy", BOTH, {}),
]


@pytest.fixture(scope="module")
def records():
    return [
        window_record(text, id=f"r{i + 1}", label=label, labels=LABELS, visible=visible, meta=meta)
        for i, (text, label, visible, meta) in enumerate(CASES)
    ]


def test_window_records_read_the_explanation_not_the_label(records):
    r1, r2, r3, r4, r5, r6 = records
    assert (r1.prediction, r1.implied, r1.first_modality, r1.grounding, r1.coverage) == ("angry", "angry", "visual", 1.0, 1.0)
    assert (r2.prediction, r2.implied, r2.grounding) == ("sad", "happy", 0.5)
    assert r3.implied is None and r3.grounding is None and r3.coverage == 0.0
    assert r4.prediction is None and r4.answer == "bored" and not r4.well_formed
    assert r4.grounding == 1.0 and r4.coverage == 1.0  # only the visible modality's cues count
    assert r5.prediction == "happy" and not r5.correct
    assert r6.grounding is None and r6.kind is None and r6.coverage == 0.5
    assert all(r.well_formed for r in (r1, r2, r3, r5, r6))
    assert r5.summary_problem == "summary names 'aual', not a modality" and r1.summary_problem is None
    assert all(r.summary_problem == "no summary" for r in (r2, r3, r4, r6))  # a rationale owes one


def test_intensity_agreement_compares_stated_intensity_words_with_the_descriptions():
    from migr_rt.training.judge import described_intensities, intensity_agreement

    described = {"visual": "strongly lowered brows, raised cheeks, no slightly narrowed eyes",
                 "audio": "clearly loud voice"}
    shown = described_intensities(described)
    assert shown == {"brows_lowered": 1.0, "voice_loud": 0.7}  # a bare or negated phrase says no strength
    assert described_intensities({"visual": "a furious glare", "audio": ""}) is None  # cues unknown
    # a cue described with two different words has no known strength
    assert described_intensities({"visual": "slightly lowered brows, clearly lowered brows", "audio": ""}) == {}
    text = ("<think><visual>strongly lowered brows, strongly raised cheeks, no slightly loud voice</visual>"
            "<audio>strongly loud voice</audio><summary>the visual evidence decides: clearly lowered brows</summary>"
            "</think><answer>angry</answer>")
    parsed = parse_trace(text, DFEW_LABELS)
    # counted: strongly lowered brows (right), strongly loud voice (wrong: clearly), clearly lowered brows in the
    # summary (wrong: a cue stated twice counts twice, as the judge counts it); raised cheeks have no known
    # strength, and the negated statement says none
    assert intensity_agreement(parsed, shown) == pytest.approx(1 / 3)
    bare = "<think><visual>lowered brows</visual><audio>loud voice</audio></think><answer>angry</answer>"
    # a bare phrase weighs what the judge gives it, 1.0: right for strongly lowered brows, overstated for the voice
    assert intensity_agreement(parse_trace(bare, DFEW_LABELS), shown) == 0.5
    assert intensity_agreement(parse_trace(bare, DFEW_LABELS), {}) is None
    meta = {"cues": {"visual": ["brows_lowered", "cheeks_raised"], "audio": ["voice_loud"]}, "intensities": shown}
    seen = window_record(text, id="w", label="angry", labels=DFEW_LABELS, visible=["visual", "audio"], meta=meta)
    hidden = window_record(text, id="w", label="angry", labels=DFEW_LABELS, visible=["visual"], meta=meta)
    unknown = window_record(text, id="w", label="angry", labels=DFEW_LABELS, visible=["visual"],
                            meta={"cues": meta["cues"]})
    assert seen.intensity == pytest.approx(1 / 3) and unknown.intensity is None
    assert hidden.intensity == pytest.approx(1 / 2)  # the hidden voice is not shown, so it is not counted
    m = reasoning_metrics([seen, hidden, unknown], DFEW_LABELS)
    assert m["intensity_agreement"] == pytest.approx((1 / 3 + 1 / 2) / 2) and m["intensity_windows"] == 2


def test_reasoning_metrics_by_hand(records):
    m = reasoning_metrics(records, LABELS)
    assert m["windows"] == 6 and m["correct"] == 4
    assert m["war"] == pytest.approx(4 / 6)
    # recall: angry 1/2, fear 1, happy 1, neutral 0, sad 1; disgust and surprise have no support
    assert m["per_class_recall"] == {"angry": 0.5, "disgust": None, "fear": 1.0, "happy": 1.0, "neutral": 0.0,
                                     "sad": 1.0, "surprise": None}
    assert m["uar"] == pytest.approx(3.5 / 5)
    assert m["support"]["angry"] == 2 and m["support"]["disgust"] == 0
    assert m["invalid_answers"] == 1
    # correct: r1 (consistent), r2 (implies happy), r3 (no cue), r6 (consistent)
    assert m["icr"] == pytest.approx(2 / 4) and m["icr_inconsistent"] == 2 and m["icr_no_cue"] == 1
    # eligible: r1 yes, r2 no, r3 yes, r5 yes (r4's dominant audio is hidden, r6 has no ground truth)
    assert m["first_segment_agreement"] == pytest.approx(3 / 4) and m["first_segment_windows"] == 4
    assert m["first_segment_agreement_one_sided"] == 1.0 and m["first_segment_one_sided_windows"] == 1
    assert m["grounding_rate"] == pytest.approx((1.0 + 0.5 + 1.0 + 1.0) / 4) and m["grounding_windows"] == 4
    assert m["coverage"] == pytest.approx((1 + 1 + 0 + 1 + 1 + 0.5) / 6)
    assert m["format_valid"] == pytest.approx(5 / 6)
    assert m["summary_faults"] == pytest.approx(5 / 6)


def test_label_closed_metrics_by_hand(records):
    """The same explanations read against the answer-slot label the runtime closes them with."""
    m = reasoning_metrics(records, LABELS)
    assert m["answer_explanation_agreement"] == pytest.approx(2 / 6)  # r1 angry, r6 happy; r3 implies nothing
    assert m["label_closed_icr"] is None and m["label_closed_icr_inconsistent"] is None  # no slot label read
    # r1 slot angry (right, consistent), r2 slot sad (right, argues happy), r3 slot fear (right, no cue),
    # r6 slot neutral (wrong; its explanation argues happy)
    text, label, visible, meta = zip(*[CASES[i] for i in (0, 1, 2, 5)])
    slotted = [window_record(t, id=f"s{i}", label=lab, labels=LABELS, visible=v, meta=mt, slot_label=slot)
               for i, (t, lab, v, mt, slot) in enumerate(zip(text, label, visible, meta,
                                                             ["angry", "sad", "fear", "neutral"]))]
    m = reasoning_metrics(slotted, LABELS)
    assert m["label_closed_icr"] == pytest.approx(2 / 3) and m["label_closed_icr_inconsistent"] == 2
    assert m["label_closed_explanation_agreement"] == pytest.approx(1 / 4)
    assert m["answer_explanation_agreement"] == pytest.approx(2 / 4)  # the written answers: r1, r6


def test_subset_metrics_by_hand(records):
    subs = subset_metrics(records, LABELS)
    assert subs["consistent"]["windows"] == 2 and subs["consistent"]["war"] == 0.5  # r1, r4
    hard = subs["ambiguous_conflicting"]  # r2, r3, r5
    assert hard["windows"] == 3 and hard["war"] == pytest.approx(2 / 3) and hard["icr"] == 1.0
    assert set(subs["by_kind"]) == {"consistent", "conflicting", "ambiguous"}
    assert subs["by_kind"]["conflicting"]["first_segment_agreement"] == 0.5  # r2 no, r5 yes
    assert subset_metrics(records[5:], LABELS) == {}  # real data: no kinds, no subsets
    empty = reasoning_metrics([], LABELS)
    assert empty["windows"] == 0 and empty["war"] is None and empty["icr"] is None


def test_drift_curve_averages_over_windows_that_reach_a_step():
    shares = torch.tensor([[[0.2, 0.1], [0.1, 0.1]], [[0.4, 0.3], [0.0, 0.0]]])
    reached = torch.tensor([[True, True], [True, False]])
    curve = drift_curve(shares, reached, ["visual", "audio"])
    assert [p["windows"] for p in curve] == [2, 1]
    assert curve[0]["visual"] == pytest.approx(0.3) and curve[0]["total"] == pytest.approx(0.5)
    assert curve[1]["total"] == pytest.approx(0.2)


def test_teacher_forced_pass_reproduces_greedy_decoding(tiny_model):
    """The drift pass must see exactly the sequence and masks generation saw."""
    model, _ = tiny_model
    pixels, audio = random_inputs(model.config, 3, seed=5)
    present = torch.tensor([[True, True], [False, True], [True, False]])
    ids = reasoning_prompt(model, 3)
    out = generate(model, ids, pixels, audio, present=present, config=GenerationConfig(max_new_tokens=7, stop_token_ids=()))
    with torch.no_grad():
        logits = _teacher_forced(model, ids, pixels, audio, present, out.tokens[:, :-1]).logits
    p = ids.shape[1]
    assert torch.equal(logits[:, p - 1 :].argmax(-1), out.tokens)


def test_modality_attention_shares(tiny_model):
    model, _ = tiny_model
    before = model.decoder.config._attn_implementation
    pixels, audio = random_inputs(model.config, 3, seed=6)
    present = torch.tensor([[True, True], [False, True], [True, False]])
    ids = reasoning_prompt(model, 3)
    out = generate(model, ids, pixels, audio, present=present, config=GenerationConfig(max_new_tokens=6, stop_token_ids=()))
    shares, reached = modality_attention(model, ids, pixels, audio, present, out, max_steps=5)
    assert shares.shape == (3, 5, 2) and reached.all()
    assert model.decoder.config._attn_implementation == before, "eager attention must be switched back"
    assert (shares >= 0).all() and (shares.sum(-1) <= 1 + 1e-6).all()
    assert (shares[0] > 0).all(), "visible placeholders draw some attention"
    assert (shares[1, :, 0] == 0).all() and (shares[2, :, 1] == 0).all(), "a hidden modality gets no attention"
    curve = drift_curve(shares, reached, ["visual", "audio"])
    for point in curve:
        assert 0 <= point["total"] <= 1 and point["visual"] + point["audio"] == pytest.approx(point["total"])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("evalcorpus") / "c"
    generate_corpus(SynthConfig(n=5, seed=31, workers=1), out)
    return out


REPORT_KEYS = {"windows", "labels", "judge", "config", "metrics", "subsets", "drift", "elapsed_s"}
METRIC_KEYS = {
    "windows", "correct", "war", "uar", "per_class_recall", "support", "invalid_answers", "icr", "icr_inconsistent",
    "icr_no_cue", "first_segment_agreement", "first_segment_windows", "first_segment_agreement_one_sided",
    "first_segment_one_sided_windows", "grounding_rate", "grounding_windows", "coverage", "format_valid",
    "summary_faults", "answer_slot_accuracy", "answer_explanation_agreement", "label_closed_icr",
    "label_closed_icr_inconsistent", "label_closed_explanation_agreement", "intensity_agreement", "intensity_windows",
}  # fmt: skip


def test_evaluate_reasoning_end_to_end(tiny_model, corpus, tmp_path):
    model, tok = tiny_model
    windows = load_or_extract(open_source(corpus), model.config, tmp_path / "cache", None)
    progress = []
    report = evaluate_reasoning(model, tok, windows, EvalConfig(max_new_tokens=6, batch_size=3, drift_steps=4),
                                on_progress=progress.append)
    assert [p.done for p in progress] == [3, 5]
    data = json.loads(json.dumps(report.to_json()))
    assert set(data) == REPORT_KEYS and set(data["metrics"]) == METRIC_KEYS
    assert data["windows"] == 5 and data["metrics"]["windows"] == 5
    assert data["subsets"] and set(data["subsets"]) == {"consistent", "ambiguous_conflicting", "by_kind"}
    assert 1 <= len(data["drift"]) <= 4 and data["drift"][0]["windows"] == 5
    assert set(data["drift"][0]) == {"step", "windows", "total", "visual", "audio"}
    preds = report.predictions()
    assert [p["id"] for p in preds] == windows.ids
    # every synthetic window's descriptions give its cues' strengths, which the records are measured against
    assert all(windows.shown_intensities(i) for i in range(len(windows)))
    assert all(p["text"].startswith("<think>") for p in preds)
    assert not model.training
    # the slot label each record is closed with is the model's answer-slot argmax (the MI reference's prediction)
    pixels, audio, present, _ = windows.batch(torch.arange(len(windows)))
    slot = score_modality_importance(model, pixels, audio, present=present)
    assert [p["slot_label"] for p in preds] == [model.config.labels[int(i)] for i in slot.predicted]
    assert data["metrics"]["answer_slot_accuracy"] == pytest.approx(
        sum(p["slot_label"] == p["label"] for p in preds) / 5)


def test_cli_eval_writes_report_predictions_and_plot(tiny_model, corpus, tmp_path):
    model, tok = tiny_model
    ckpt = save_checkpoint(model, tok, tmp_path / "tiny")
    result = CliRunner().invoke(main, ["eval", "--checkpoint", str(ckpt), "--data", str(corpus), "--limit", "3",
                                       "--max-new-tokens", "4", "--batch-size", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "tiny.eval"
    data = json.loads((out / "eval.json").read_text())
    assert set(data) == REPORT_KEYS and data["windows"] == 3
    lines = (out / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 3 and {"id", "label", "prediction", "implied", "first_modality", "text"} <= set(json.loads(lines[0]))
    assert (out / "drift.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "cache").is_dir()
    assert "WAR" in result.stdout and "evaluated 3/3 windows" in result.stderr
    assert "closed with the answer-slot label" in result.stdout


def test_cli_eval_names_bad_inputs(tiny_model, corpus, tmp_path):
    model, tok = tiny_model
    missing = CliRunner().invoke(main, ["eval", "--checkpoint", str(tmp_path / "nope"), "--data", str(corpus)])
    assert missing.exit_code == 1 and "--checkpoint" in missing.output and "nope" in missing.output
    ckpt = save_checkpoint(model, tok, tmp_path / "tiny")
    no_data = CliRunner().invoke(main, ["eval", "--checkpoint", str(ckpt), "--data", str(tmp_path / "nodata")])
    assert no_data.exit_code == 1 and "--data" in no_data.output and "nodata" in no_data.output
    bad_device = CliRunner().invoke(main, ["eval", "--checkpoint", str(ckpt), "--data", str(corpus), "--device", "foo"])
    assert bad_device.exit_code == 2 and "--device" in bad_device.output and "foo" in bad_device.output


def test_describe_mode_judges_a_base_models_description_against_its_answer_slot(tiny_model, corpus, tmp_path):
    """A base checkpoint writes no <think>: its description is the explanation of its answer-slot label."""
    model, tok = tiny_model
    windows = load_or_extract(open_source(corpus), model.config, tmp_path / "cache", None)
    report = evaluate_reasoning(model, tok, windows, EvalConfig(max_new_tokens=8, batch_size=4, drift=False,
                                                                mode="describe"))
    for record in report.records:
        assert record.text.startswith("<think>") and record.text.endswith(f"<answer>{record.answer}</answer>")
        assert record.prediction == record.answer  # always a label: the answer slot cannot miss
    assert report.metrics["invalid_answers"] == 0
    assert report.metrics["war"] == pytest.approx(report.metrics["answer_slot_accuracy"])
    with pytest.raises(ValueError, match="mode"):
        EvalConfig(mode="chat")


def test_mi_opening_starts_every_rationale_with_the_runtime_mi_choice(tiny_model, corpus, tmp_path):
    from migr_rt.training.evaluation import mi_opening

    model, tok = tiny_model
    windows = load_or_extract(open_source(corpus), model.config, tmp_path / "cache", None)
    pixels, audio, present, _ = windows.batch(torch.arange(len(windows)))
    expected = mi_opening(model, pixels, audio, present)
    report = evaluate_reasoning(model, tok, windows, EvalConfig(max_new_tokens=6, batch_size=4, drift=True,
                                                                opening="mi"))
    for record, first in zip(report.records, expected):
        assert record.text.startswith(f"<think><{first}>")  # (a random model rarely closes the segment)
        assert record.first_modality in (first, None)
    with pytest.raises(ValueError, match="opening"):
        EvalConfig(opening="audio")
