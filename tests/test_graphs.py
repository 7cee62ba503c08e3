"""The inference graphs (explicit-cache decoder) against the transformers forward and the MI reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_fixtures import random_inputs

from migr_rt.backends import AnswerAnchor, ModalityTokens, greedy_decode
from migr_rt.backends.torch_backend import TorchBackend
from migr_rt.generate import GenerationConfig, generate
from migr_rt.mi import score_modality_importance
from migr_rt.model.graphs import build_graphs
from migr_rt.model.layout import prefix_ids

PRESENCE = [[True, True], [True, False], [False, True]]


def prompt(model, batch: int) -> torch.Tensor:
    return torch.tensor([prefix_ids(model.config) + [model.config.special_token_ids["think_start"]]] * batch)


@pytest.mark.parametrize("batch", [1, 3])
def test_scoring_graph_equals_the_mi_reference(tiny_model, batch):
    model, _ = tiny_model
    pixels, audio = random_inputs(model.config, batch, seed=batch)
    present = torch.tensor(PRESENCE[:batch])
    backend = TorchBackend(model)
    got = backend.score_mi(backend.encode(pixels, audio), present)
    ref = score_modality_importance(model, pixels, audio, present=present)
    assert all(isinstance(a, np.ndarray) for a in (got.log_probs, got.mi, got.importance, got.dominant, got.present))
    np.testing.assert_allclose(got.log_probs, ref.log_probs.numpy(), atol=1e-5)
    np.testing.assert_allclose(got.mi, ref.mi.numpy(), atol=1e-5)
    np.testing.assert_allclose(got.importance, ref.importance.numpy(), atol=1e-5)
    assert np.array_equal(got.dominant, ref.dominant.numpy()) and np.array_equal(got.predicted, ref.predicted.numpy())
    np.testing.assert_allclose(got.probs, ref.probs.numpy(), atol=1e-5)


def test_encoders_split_into_cacheable_frames_equal_the_model(tiny_model):
    model, _ = tiny_model
    pixels, audio = random_inputs(model.config, 2, seed=4)
    tokens = TorchBackend(model).encode(pixels, audio)
    with torch.no_grad():
        np.testing.assert_allclose(tokens.visual, model.encode_visual(pixels).numpy(), atol=1e-6)
        np.testing.assert_allclose(tokens.audio, model.encode_audio(audio).numpy(), atol=1e-6)


def test_the_torch_backend_takes_float64_arrays_as_the_artifact_backends_do(tiny_model):
    # the interface takes any array-like (onnxruntime casts to float32): numpy's default float64 included
    model, _ = tiny_model
    pixels, audio = random_inputs(model.config, 2, seed=4)
    backend = TorchBackend(model)
    want = backend.encode(pixels, audio)
    got = backend.encode(pixels.double().numpy(), audio.double().numpy())
    np.testing.assert_allclose(got.visual, want.visual, atol=1e-5)
    np.testing.assert_allclose(got.audio, want.audio, atol=1e-5)
    assert got.visual.dtype == got.audio.dtype == np.float32
    frames = backend.encode_frames(pixels.flatten(0, 1)).reshape(2, model.config.num_frames, -1)
    np.testing.assert_allclose(backend.pool_frames(frames.astype(np.float64)), backend.pool_frames(frames), atol=1e-5)
    wide = ModalityTokens(want.visual.astype(np.float64), want.audio.astype(np.float64))
    present = np.array([[True, True], [True, False]])
    np.testing.assert_allclose(backend.score_mi(wide, present).log_probs, backend.score_mi(want, present).log_probs,
                               atol=1e-6)
    ids = prompt(model, 2)
    np.testing.assert_allclose(backend.prefill(ids, wide, present)[0], backend.prefill(ids, want, present)[0],
                               atol=1e-6)


def test_prefill_and_steps_equal_the_transformers_forward(tiny_model):
    model, _ = tiny_model
    cfg = model.config
    pixels, audio = random_inputs(cfg, 3, seed=5)
    present = torch.tensor(PRESENCE)
    ids = prompt(model, 3)
    graphs = build_graphs(model)
    backend = TorchBackend(model)
    tokens = backend.encode(pixels, audio)
    visual, audio_tokens = torch.from_numpy(tokens.visual), torch.from_numpy(tokens.audio)
    with torch.no_grad():
        logits, keys, values, key_visible = graphs["prefill"](ids, visual, audio_tokens, present)
        seq = ids
        for _ in range(5):
            ref = model(seq, pixels, audio, modality_visible=present).logits[:, -1]
            assert torch.allclose(logits, ref, atol=1e-4), (logits - ref).abs().max()
            nxt = logits.argmax(-1)
            seq = torch.cat([seq, nxt[:, None]], 1)
            logits, keys, values, key_visible = graphs["step"](nxt[:, None], keys, values, key_visible)
    layers = cfg.text_config.num_hidden_layers
    assert keys.shape[0] == layers and keys.shape[3] == seq.shape[1]
    # hidden modality keys stay hidden in the cache: row 1 has no audio, row 2 no visual
    assert not key_visible[1][seq[1] == cfg.special_token_ids["aud_token"]].any()
    assert not key_visible[2][seq[2] == cfg.special_token_ids["vis_token"]].any()


def test_greedy_decode_on_the_backend_equals_generate(tiny_model):
    model, _ = tiny_model
    pixels, audio = random_inputs(model.config, 3, seed=6)
    present = torch.tensor(PRESENCE)
    ids = prompt(model, 3)
    ref = generate(model, ids, pixels, audio, present=present, config=GenerationConfig(max_new_tokens=12))
    backend = TorchBackend(model)
    seen = []
    out = greedy_decode(backend, ids, backend.encode(pixels, audio), present, max_new_tokens=12,
                        on_token=lambda step, t: seen.append(t.copy()), constrain=False)  # an untrained model
    assert np.array_equal(out.tokens, ref.tokens.numpy()) and np.array_equal(out.lengths, ref.lengths.numpy())
    assert np.array_equal(np.stack(seen, 1), out.tokens)


def test_greedy_decode_takes_plain_lists_as_the_interface_promises(tiny_model):
    model, _ = tiny_model
    pixels, audio = random_inputs(model.config, 3, seed=6)
    backend = TorchBackend(model)
    tokens = backend.encode(pixels, audio)
    ids = prompt(model, 3)
    want = greedy_decode(backend, ids, tokens, torch.tensor(PRESENCE), max_new_tokens=5)
    got = greedy_decode(backend, ids.tolist(), tokens, PRESENCE, max_new_tokens=5)
    assert np.array_equal(got.tokens, want.tokens) and np.array_equal(got.lengths, want.lengths)


def test_decode_stops_early_when_cancelled(tiny_model):
    model, _ = tiny_model
    pixels, audio = random_inputs(model.config, 1, seed=7)
    backend = TorchBackend(model)
    calls = []
    out = greedy_decode(backend, prompt(model, 1), backend.encode(pixels, audio), torch.tensor([[True, True]]),
                        max_new_tokens=50, stop_token_ids=(), cancelled=lambda: len(calls) >= 3 or calls.append(1))
    assert out.tokens.shape[1] == 4


def test_anchored_decode_answers_with_the_given_label_and_keeps_the_models_choice(tiny_model):
    """After ``<answer>`` (here the prompt's last token) each row gets its given label; the argmax is kept.

    The model is untrained: its own trace has no shape to keep (``constrain=False``, as in the anchor tests below).
    """
    model, _ = tiny_model
    cfg = model.config
    pixels, audio = random_inputs(cfg, 3, seed=8)
    present = torch.tensor(PRESENCE)
    ids = torch.tensor([prefix_ids(cfg) + [cfg.special_token_ids["answer_start"]]] * 3)
    backend = TorchBackend(model)
    tokens = backend.encode(pixels, audio)
    free = greedy_decode(backend, ids, tokens, present, max_new_tokens=1, stop_token_ids=(), constrain=False)
    # labels the model did not choose, so an anchor that did nothing would fail
    labels = np.array([next(t for t in cfg.label_token_ids if t != int(own)) for own in free.tokens[:, 0]])
    anchor = AnswerAnchor(labels)
    out = greedy_decode(backend, ids, tokens, present, max_new_tokens=6, stop_token_ids=(), anchor=anchor,
                        constrain=False)
    assert np.array_equal(out.tokens[:, 0], labels)
    assert np.array_equal(anchor.model_ids, free.tokens[:, 0])
    # what follows is the model continuing from the label it was given
    seq = np.concatenate([ids.numpy(), labels[:, None]], 1)
    after = greedy_decode(backend, seq, tokens, present, max_new_tokens=5, stop_token_ids=(), constrain=False)
    assert np.array_equal(out.tokens[:, 1:], after.tokens)


def test_anchor_leaves_a_rationale_without_an_answer_untouched(tiny_model):
    model, _ = tiny_model
    cfg = model.config
    pixels, audio = random_inputs(cfg, 2, seed=9)
    present = torch.tensor(PRESENCE[:2])
    backend = TorchBackend(model)
    tokens = backend.encode(pixels, audio)
    free = greedy_decode(backend, prompt(model, 2), tokens, present, max_new_tokens=10, stop_token_ids=(),
                         constrain=False)
    assert not (free.tokens == cfg.special_token_ids["answer_start"]).any()  # the random model writes no <answer>
    anchor = AnswerAnchor(torch.tensor(cfg.label_token_ids[:2]))
    out = greedy_decode(backend, prompt(model, 2), tokens, present, max_new_tokens=10, stop_token_ids=(), anchor=anchor,
                        constrain=False)
    assert np.array_equal(out.tokens, free.tokens)
    assert anchor.model_ids.tolist() == [-1, -1]
    with pytest.raises(ValueError, match="3 labels for 2 rows"):
        greedy_decode(backend, prompt(model, 2), tokens, present, anchor=AnswerAnchor(torch.tensor([1, 2, 3])))


def test_generate_closes_with_the_anchor_as_the_backend_decode_does(tiny_model):
    """The HF reference path (``generate``) and the runtime's loop give the same anchored tokens."""
    model, _ = tiny_model
    cfg = model.config
    pixels, audio = random_inputs(cfg, 2, seed=10)
    present = torch.tensor(PRESENCE[:2])
    ids = torch.tensor([prefix_ids(cfg) + [cfg.special_token_ids["answer_start"]]] * 2)
    labels = torch.tensor(cfg.label_token_ids[2:4])
    backend = TorchBackend(model)
    a, b = AnswerAnchor(labels), AnswerAnchor(labels)
    ref = generate(model, ids, pixels, audio, present=present, config=GenerationConfig(max_new_tokens=6), anchor=a)
    out = greedy_decode(backend, ids, backend.encode(pixels, audio), present, max_new_tokens=6, anchor=b,
                       constrain=False)
    assert np.array_equal(ref.tokens.numpy(), out.tokens) and np.array_equal(ref.lengths.numpy(), out.lengths)
    assert torch.equal(ref.tokens[:, 0], labels) and np.array_equal(a.model_ids, b.model_ids)
    with pytest.raises(ValueError, match="greedy"):
        generate(model, ids, pixels, audio, config=GenerationConfig(temperature=1.0), anchor=a)


def test_anchored_rows_that_stopped_stay_padded(tiny_model):
    """A row whose label is a stop token ends at it; the other row goes on; the anchor never revives a row."""
    model, _ = tiny_model
    cfg = model.config
    pixels, audio = random_inputs(cfg, 2, seed=11)
    ids = torch.tensor([prefix_ids(cfg) + [cfg.special_token_ids["answer_start"]]] * 2)
    backend = TorchBackend(model)
    labels = torch.tensor(cfg.label_token_ids[:2])
    out = greedy_decode(backend, ids, backend.encode(pixels, audio), torch.tensor(PRESENCE[:2]), max_new_tokens=5,
                        stop_token_ids=(int(labels[0]),), anchor=AnswerAnchor(labels))
    pad = cfg.special_token_ids["pad"]
    assert out.lengths.tolist()[0] == 1 and (out.tokens[0, 1:] == pad).all()
    assert int(out.tokens[1, 0]) == int(labels[1]) and int(out.lengths[1]) > 1


def test_an_anchor_is_checked_and_starts_afresh(tiny_model):
    model, _ = tiny_model
    cfg = model.config
    pixels, audio = random_inputs(cfg, 1, seed=12)
    backend = TorchBackend(model)
    tokens = backend.encode(pixels, audio)
    ids = torch.tensor([prefix_ids(cfg) + [cfg.special_token_ids["answer_start"]]])
    with pytest.raises(ValueError, match="anchor label id 3 is not the token of one of this model's labels"):
        greedy_decode(backend, ids, tokens, torch.tensor([[True, True]]), anchor=AnswerAnchor(torch.tensor([3])))
    with pytest.raises(ValueError, match="one token id per row"):
        AnswerAnchor(torch.tensor([[cfg.label_token_ids[0]]]))
    anchor = AnswerAnchor(torch.tensor([cfg.label_token_ids[0]]))
    greedy_decode(backend, ids, tokens, torch.tensor([[True, True]]), max_new_tokens=2, anchor=anchor)
    assert int(anchor.model_ids[0]) >= 0
    # the same anchor on a rationale that writes no <answer>: nothing left over from the first run
    greedy_decode(backend, prompt(model, 1), tokens, torch.tensor([[True, True]]), max_new_tokens=3,
                  stop_token_ids=(), anchor=anchor)
    assert anchor.model_ids.tolist() == [-1]


def test_backend_outputs_in_bfloat16_become_float32_arrays():
    from migr_rt.backends.base import as_numpy, importance_result

    log_probs = torch.tensor([[[-0.5, -1.0], [-0.75, -0.7], [-0.5, -2.0]]], dtype=torch.bfloat16)
    res = importance_result(log_probs, log_probs[:, 0, :2], log_probs[:, 0, :2], torch.tensor([1]), [[True, True]])
    assert res.log_probs.dtype == res.mi.dtype == np.float32 and res.log_probs[0, 1, 1] == np.float32(-0.69921875)
    assert as_numpy(torch.ones(2, dtype=torch.bfloat16)).dtype == np.float32
