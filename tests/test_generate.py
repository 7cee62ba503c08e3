"""Decoding: cached steps equal full recomputation, masks persist, stops, callbacks, sampling."""

from __future__ import annotations

import torch
from model_fixtures import random_inputs

from migr_rt.generate import GenerationConfig, generate
from migr_rt.model.layout import prefix_ids


def prompt(model, batch):
    ids = prefix_ids(model.config) + [model.config.special_token_ids["think_start"]]
    return torch.tensor([ids] * batch)


def test_greedy_equals_recomputing_the_full_sequence(tiny_model):
    model, _ = tiny_model
    pixels, audio = random_inputs(model.config, 2, seed=1)
    ids = prompt(model, 2)
    out = generate(model, ids, pixels, audio, config=GenerationConfig(max_new_tokens=6, stop_token_ids=()))
    seq = ids
    with torch.no_grad():
        for step in range(6):
            nxt = model(seq, pixels, audio).logits[:, -1].argmax(-1)
            assert torch.equal(nxt, out.tokens[:, step])
            seq = torch.cat([seq, nxt[:, None]], 1)


def test_hidden_modality_stays_hidden_while_decoding(tiny_model):
    model, _ = tiny_model
    pixels, audio = random_inputs(model.config, 2, seed=2)
    ids = prompt(model, 2)
    cfg = GenerationConfig(max_new_tokens=8, stop_token_ids=())
    present = torch.tensor([[False, True]] * 2)
    a = generate(model, ids, pixels, audio, present=present, config=cfg)
    b = generate(model, ids, torch.rand_like(pixels), audio, present=present, config=cfg)
    c = generate(model, ids, None, audio, config=cfg)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.tokens, c.tokens)
    assert torch.allclose(a.logprobs, c.logprobs, atol=1e-5)


def test_stops_lengths_callbacks_and_cancel(tiny_model):
    model, _ = tiny_model
    pixels, audio = random_inputs(model.config, 3, seed=3)
    ids = prompt(model, 3)
    free = generate(model, ids, pixels, audio, config=GenerationConfig(max_new_tokens=5, stop_token_ids=()))
    first = int(free.tokens[0, 0])
    # make row 0's first token a stop token: it ends after 1 token, the others run on
    out = generate(model, ids, pixels, audio, config=GenerationConfig(max_new_tokens=5, stop_token_ids=(first,)))
    assert out.lengths[0] == 1
    assert out.logprobs[0, 1:].abs().sum() == 0
    assert (out.tokens[0, 1:] == model.config.special_token_ids["pad"]).all()
    seen = []
    generate(model, ids, pixels, audio, config=GenerationConfig(max_new_tokens=5, stop_token_ids=()),
             on_token=lambda step, tok: seen.append(step), cancelled=lambda: len(seen) >= 2)
    assert seen == [0, 1]


def test_sampling_is_reproducible_and_logprobs_match(tiny_model):
    model, _ = tiny_model
    pixels, audio = random_inputs(model.config, 4, seed=4)
    ids = prompt(model, 4)
    cfg = GenerationConfig(max_new_tokens=4, temperature=1.3, top_k=20, stop_token_ids=())
    a = generate(model, ids, pixels, audio, config=cfg, generator=torch.Generator().manual_seed(7))
    b = generate(model, ids, pixels, audio, config=cfg, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.tokens, b.tokens)
    with torch.no_grad():
        logits = model(ids, pixels, audio).logits[:, -1].float() / 1.3
    kth = logits.topk(20, -1).values[:, -1:]
    lp = logits.masked_fill(logits < kth, float("-inf")).log_softmax(-1)
    assert torch.allclose(a.logprobs[:, 0], lp.gather(-1, a.tokens[:, :1]).squeeze(-1), atol=1e-5)
