"""Modality Importance reference: batching, masking semantics, absent modalities, the pure formula."""

from __future__ import annotations

import math

import pytest
import torch
from model_fixtures import random_inputs

from migr_rt.mi import importance_from_log_probs, score_modality_importance, variant_visibility
from migr_rt.model.layout import scoring_batch


def test_variant_visibility_layout():
    present = torch.tensor([[True, True], [True, False]])
    vis = variant_visibility(present)
    assert vis.tolist() == [
        [[True, True], [False, True], [True, False]],
        [[True, False], [False, False], [True, False]],
    ]


def test_importance_formula_on_a_hand_example():
    # one window, C = 3 labels; variant 0 full, 1 visual masked, 2 audio masked
    probs = torch.tensor([[[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1]]])
    mi, imp, dom = importance_from_log_probs(probs.log(), torch.tensor([0]), torch.tensor([[True, True]]))
    expected = [math.log(0.7 / 0.2), math.log(0.7 / 0.6)]
    assert mi[0].tolist() == pytest.approx(expected, rel=1e-6)
    e = [math.exp(x) for x in expected]
    assert imp[0].tolist() == pytest.approx([e[0] / sum(e), e[1] / sum(e)], rel=1e-6)
    assert dom.tolist() == [0]


def test_importance_with_absent_modalities():
    lp = torch.randn(3, 3, 4).log_softmax(-1)
    present = torch.tensor([[True, False], [False, False], [False, True]])
    mi, imp, dom = importance_from_log_probs(lp, torch.tensor([1, 2, 3]), present)
    assert mi[0, 1] == 0 and mi[2, 0] == 0 and (mi[1] == 0).all()
    assert imp.tolist()[0] == [1.0, 0.0] and imp.tolist()[1] == [0.0, 0.0] and imp.tolist()[2] == [0.0, 1.0]
    assert dom.tolist() == [0, -1, 1]


@pytest.mark.parametrize("batch", [1, 5])
def test_batch_equals_each_sample_alone(tiny_model, batch):
    model, _ = tiny_model
    pixels, audio = random_inputs(model.config, batch, seed=7)
    together = score_modality_importance(model, pixels, audio)
    for i in range(batch):
        alone = score_modality_importance(model, pixels[i : i + 1], audio[i : i + 1])
        assert torch.allclose(together.log_probs[i], alone.log_probs[0], atol=1e-5)
        assert torch.allclose(together.mi[i], alone.mi[0], atol=1e-5)
        assert together.dominant[i] == alone.dominant[0]


def test_variants_match_separate_masked_forwards(tiny_model):
    """Each variant of the one batched pass equals a separate forward with that modality masked."""
    model, _ = tiny_model
    pixels, audio = random_inputs(model.config, 2, seed=8)
    result = score_modality_importance(model, pixels, audio)
    ids = scoring_batch(model.config, 2)
    for v, visible in enumerate([(True, True), (False, True), (True, False)]):
        with torch.no_grad():
            logits = model(ids, pixels, audio, modality_visible=torch.tensor([visible] * 2)).logits[:, -1]
        lp = logits[:, model.label_token_ids].float().log_softmax(-1)
        assert torch.allclose(result.log_probs[:, v], lp, atol=1e-5)


def test_ground_truth_target_and_prediction(tiny_model):
    model, _ = tiny_model
    pixels, audio = random_inputs(model.config, 3, seed=9)
    pred = score_modality_importance(model, pixels, audio)
    assert torch.equal(pred.target, pred.predicted)
    target = (pred.predicted + 1) % len(model.config.labels)
    gt = score_modality_importance(model, pixels, audio, target=target)
    assert torch.equal(gt.target, target)
    lp = gt.log_probs.gather(-1, target.view(3, 1, 1).expand(3, 3, 1)).squeeze(-1)
    assert torch.allclose(gt.mi, lp[:, :1] - lp[:, 1:])


def test_absent_audio_for_batch_and_per_window(tiny_model):
    model, _ = tiny_model
    pixels, audio = random_inputs(model.config, 2, seed=10)
    visual_only = score_modality_importance(model, pixels, None)
    assert visual_only.present.tolist() == [[True, False]] * 2
    assert visual_only.importance[:, 0].tolist() == [1.0, 1.0]
    assert visual_only.dominant.tolist() == [0, 0]
    # per-window absence gives the same numbers for that window as dropping the input
    mixed = score_modality_importance(model, pixels, audio, present=torch.tensor([[True, False], [True, True]]))
    assert torch.allclose(mixed.log_probs[0], visual_only.log_probs[0], atol=1e-5)
    assert mixed.present[1].all()


def test_scoring_after_a_trace_with_right_padding(tiny_model):
    """MI read at an answer slot after a variable-length trace, batched with right padding."""
    model, tok = tiny_model
    cfg = model.config
    pixels, audio = random_inputs(cfg, 2, seed=11)
    prefix = scoring_batch(cfg, 1)[0].tolist()[:-1]
    traces = ["<think><visual>brows drawn together</visual></think><answer>", "<think></think><answer>"]
    seqs = [prefix + tok.encode(t, add_special_tokens=False) for t in traces]
    length = max(map(len, seqs))
    pad = cfg.special_token_ids["pad"]
    ids = torch.tensor([s + [pad] * (length - len(s)) for s in seqs])
    mask = torch.tensor([[1] * len(s) + [0] * (length - len(s)) for s in seqs])
    answer = torch.tensor([len(s) - 1 for s in seqs])
    batched = score_modality_importance(model, pixels, audio, input_ids=ids, answer_positions=answer, attention_mask=mask)
    for i, s in enumerate(seqs):
        alone = score_modality_importance(model, pixels[i : i + 1], audio[i : i + 1], input_ids=torch.tensor([s]))
        assert torch.allclose(batched.log_probs[i], alone.log_probs[0], atol=1e-5)
