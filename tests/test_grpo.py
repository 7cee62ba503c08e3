"""GRPO: advantages and loss against hand-computed numbers, log-probs against generate(), and a real learning run."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from migr_rt.training.grpo import (
    GRPOBatch,
    GRPOConfig,
    completion_logprobs,
    completion_mask,
    frozen_copy,
    group_advantages,
    grpo_loss,
    grpo_step,
    make_optimizer,
    train_grpo,
)
from model_fixtures import random_inputs

from migr_rt.generate import GenerationConfig, generate
from migr_rt.model.layout import prefix_ids

LN2 = math.log(2.0)


def prompt(model, batch: int) -> torch.Tensor:
    ids = prefix_ids(model.config) + [model.config.special_token_ids["think_start"]]
    return torch.tensor([ids] * batch)


def test_group_advantages_hand_computed():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.5, 0.5], [0.0, 0.0, 0.0, 3.0]])
    adv = group_advantages(rewards)
    # row 0: mean 0.5, population std 0.5 -> +-0.5 / 0.5 = +-1
    # row 1: all equal -> 0 (no signal)
    # row 2: mean 0.75, population std sqrt((3 * 0.75^2 + 2.25^2) / 4) = sqrt(1.6875) = 1.29904
    #        -> -0.75 / 1.29904 = -0.57735 and 2.25 / 1.29904 = 1.73205 (the unbiased std, 1.5, would give -0.5, 1.5)
    expected = torch.tensor([[1.0, -1.0, -1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [-0.57735, -0.57735, -0.57735, 1.73205]])
    assert torch.allclose(adv, expected, atol=5e-4)
    assert torch.equal(adv[1], torch.zeros(4))


def test_grpo_loss_hand_computed_and_gradients():
    # Two sequences x three tokens; sequence 1's last token is padding (garbage values that must not count).
    # Log-probs are set up through the ratios new/old and the gaps ref - new that we want:
    #   seq 0 (A = +1):   ratios 1.0, 1.5, 0.9     ref - new: 0, +ln2, -ln2
    #   seq 1 (A = -0.5): ratios 0.5, 1.5, (pad)   ref - new: 0, +ln2, (pad)
    new = torch.tensor([[-1.0, -2.0, -0.5], [-1.5, -0.7, 5.0]], requires_grad=True)
    old = torch.tensor([[-1.0, -2.0 - math.log(1.5), -0.5 - math.log(0.9)],
                        [-1.5 - math.log(0.5), -0.7 - math.log(1.5), -5.0]])
    ref = torch.tensor([[-1.0, -2.0 + LN2, -0.5 - LN2], [-1.5, -0.7 + LN2, 10.0]])
    adv = torch.tensor([1.0, -0.5])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    loss, stats = grpo_loss(new, old, ref, adv, mask, clip_eps=0.2, beta=0.1)
    # k3 kl = e^d - d - 1:  d = 0 -> 0;  d = ln2 -> 2 - 0.693147 - 1 = 0.306853;  d = -ln2 -> 0.5 + 0.693147 - 1 = 0.193147
    # seq 0, A = +1:
    #   t0 ratio 1.0: min(1.0, 1.0) = 1.0;                     - 0.1 * 0       = 1.0
    #   t1 ratio 1.5: min(1.5, clip 1.2) = 1.2 (clip binds);   - 0.1 * 0.306853 = 1.1693147
    #   t2 ratio 0.9: min(0.9, 0.9) = 0.9;                     - 0.1 * 0.193147 = 0.8806853
    #   mean = 3.05 / 3 = 1.0166667
    # seq 1, A = -0.5:
    #   t0 ratio 0.5: min(-0.25, clip 0.8 * -0.5 = -0.4) = -0.4 (clip binds); - 0      = -0.4
    #   t1 ratio 1.5: min(-0.75, clip 1.2 * -0.5 = -0.6) = -0.75;              - 0.0306853 = -0.7806853
    #   mean = -1.1806853 / 2 = -0.5903426
    # loss = -(1.0166667 - 0.5903426) / 2 = -0.2131620
    assert loss.item() == pytest.approx(-0.2131620, abs=1e-6)
    assert stats["ratio"] == pytest.approx((1.0 + 1.5 + 0.9 + 0.5 + 1.5) / 5, abs=1e-6)  # 1.08
    assert stats["clip_frac"] == pytest.approx(2 / 5)
    assert stats["kl"] == pytest.approx((0.306853 + 0.193147 + 0.306853) / 5, abs=1e-6)  # 0.1613706
    assert stats["advantage"] == pytest.approx(0.25)
    loss.backward()
    # Where the clip binds the surrogate has no gradient: seq 1 t0 (kl gap 0) gets none at all, and seq 0 t1
    # only the KL part: d(-0.1 * kl)/d new = -0.1 * (1 - e^ln2) = +0.1 on the objective -> -0.1 / (3 tokens * 2 seqs).
    assert new.grad[1, 0].item() == 0.0
    assert new.grad[0, 1].item() == pytest.approx(-0.1 / 6, abs=1e-6)
    assert new.grad[1, 2].item() == 0.0  # padding

    # On-policy, at the reference: ratio 1 and kl 0, so the loss is -mean(A) and every token's gradient is the
    # plain policy gradient -A / (tokens in its sequence * sequences).
    same = torch.tensor([[-1.0, -2.0, -0.5], [-1.5, -0.7, 5.0]], requires_grad=True)
    loss, stats = grpo_loss(same, same.detach().clone(), same.detach().clone(), adv, mask, clip_eps=0.2, beta=0.1)
    assert loss.item() == pytest.approx(-0.25)  # -(1 + -0.5) / 2
    assert stats["kl"] == 0.0 and stats["clip_frac"] == 0.0
    loss.backward()
    expected = torch.tensor([[-1.0 / 3 / 2] * 3, [0.5 / 2 / 2, 0.5 / 2 / 2, 0.0]])
    assert torch.allclose(same.grad, expected, atol=1e-7)


def test_completion_logprobs_match_generate_and_respect_visibility(tiny_model):
    model, _ = tiny_model
    model = copy.deepcopy(model)  # gradients below must not land on the shared fixture
    pixels, audio = random_inputs(model.config, 3, seed=11)
    ids = prompt(model, 3)
    present = torch.tensor([[True, True], [False, True], [True, False]])
    cfg = GenerationConfig(max_new_tokens=10, temperature=1.0, stop_token_ids=())
    first = generate(model, ids, pixels, audio, present=present, config=cfg, generator=torch.Generator().manual_seed(3))
    # Same seed with row 0's second token as a stop: row 0 ends early, so lengths differ across rows.
    cfg = GenerationConfig(max_new_tokens=10, temperature=1.0, stop_token_ids=(int(first.tokens[0, 1]),))
    gen = generate(model, ids, pixels, audio, present=present, config=cfg, generator=torch.Generator().manual_seed(3))
    assert gen.lengths.min() < gen.lengths.max()

    with torch.no_grad():
        lp = completion_logprobs(model, ids, gen.tokens, gen.lengths, pixels, audio, present, 1.0)
    assert lp.shape == gen.tokens.shape
    assert torch.allclose(lp, gen.logprobs, atol=1e-5)
    assert (lp[~completion_mask(gen.lengths, lp.shape[1])] == 0).all()

    # Hidden inputs have no effect (row 1 hides video, row 2 hides audio); a visible one does (row 0's video).
    other_pixels, other_audio = random_inputs(model.config, 3, seed=12)
    hidden_changed_pixels, hidden_changed_audio = pixels.clone(), audio.clone()
    hidden_changed_pixels[1] = other_pixels[1]
    hidden_changed_audio[2] = other_audio[2]
    visible_changed = pixels.clone()
    visible_changed[0] = other_pixels[0]
    with torch.no_grad():
        lp_hidden = completion_logprobs(model, ids, gen.tokens, gen.lengths, hidden_changed_pixels,
                                        hidden_changed_audio, present, 1.0)
        lp_visible = completion_logprobs(model, ids, gen.tokens, gen.lengths, visible_changed, audio, present, 1.0)
    assert torch.allclose(lp_hidden, lp, atol=1e-6)
    assert (lp_visible[0] - lp[0]).abs().max() > 1e-4
    assert torch.allclose(lp_visible[1:], lp[1:], atol=1e-6)

    # Differentiable, through the decoder and the encoders.
    lp = completion_logprobs(model, ids, gen.tokens, gen.lengths, pixels, audio, present, 1.0)
    lp.sum().backward()
    assert model.decoder.lm_head.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.visual_encoder.parameters())


def test_completion_logprobs_treat_sampled_placeholders_like_cached_decoding(tiny_model):
    """A sampled modality placeholder id is a plain, hidden token in generate(): the teacher-forced pass agrees."""
    model, _ = tiny_model
    special = model.config.special_token_ids
    pixels, audio = random_inputs(model.config, 2, seed=13)
    ids = prompt(model, 2)
    present = torch.tensor([[True, True], [False, True]])
    completions = torch.tensor([[5, special["vis_token"], 7, special["aud_token"], 9],
                                [special["aud_token"], 11, special["vis_token"], 13, 14]])
    lengths = torch.tensor([5, 4])
    with torch.no_grad():
        lp = completion_logprobs(model, ids, completions, lengths, pixels, audio, present, 0.7)
        # generate()'s forward path, teacher-forced: prefill, then one cached step per token.
        out = model(ids, pixels, audio, modality_visible=present, use_cache=True)
        expected = []
        for step in range(completions.shape[1]):
            step_lp = (out.logits[:, -1].float() / 0.7).log_softmax(-1)
            expected.append(step_lp.gather(-1, completions[:, step : step + 1]).squeeze(-1))
            out = model(completions[:, step : step + 1], cache=out.cache, use_cache=True,
                        past_key_visible=out.key_visible)
    expected = torch.stack(expected, 1) * completion_mask(lengths, completions.shape[1])
    assert torch.allclose(lp, expected, atol=1e-5)


def test_old_logprobs_make_the_update_on_policy_with_and_without_top_k(tiny_model):
    base, _ = tiny_model
    pixels, audio = random_inputs(base.config, 2, seed=14)
    batch = GRPOBatch(prompt(base, 2), pixels, audio, None, ["a", "b"])

    def reward_fn(gen, contexts):
        r = gen.tokens[:, 0].float() / 1000  # anything that varies within a group
        return r, {"first": r}

    for top_k in (0, 5):
        policy = copy.deepcopy(base)
        config = GRPOConfig(prompts_per_step=2, group_size=3, lr=1e-6, beta=0.0, top_k=top_k, max_new_tokens=4)
        stats = grpo_step(policy, None, make_optimizer(policy, config), batch, reward_fn, config,
                          torch.Generator().manual_seed(0))
        # top_k = 5 old log-probs taken from generate() (truncated to 5 of ~330 tokens) would give ratio ~0.02
        assert stats["ratio"] == pytest.approx(1.0, abs=1e-4), top_k
        assert stats["clip_frac"] == 0.0
        assert set(stats) >= {"loss", "reward_mean", "reward_std", "reward/first", "kl", "completion_len", "seconds"}
    with pytest.raises(ValueError, match="reference"):
        grpo_step(policy, None, make_optimizer(policy, config), batch, reward_fn, GRPOConfig(beta=0.1))


def test_grpo_learns_a_toy_reward_and_leaves_the_reference_alone(tiny_model):
    base, _ = tiny_model
    policy = copy.deepcopy(base)  # the session fixture must stay untouched
    reference = frozen_copy(policy)
    before = {k: v.clone() for k, v in reference.state_dict().items()}
    assert not any(p.requires_grad for p in reference.parameters()) and not reference.training

    prompts = 4
    pixels, audio = random_inputs(base.config, prompts, seed=15)
    present = torch.tensor([[True, True], [True, False], [False, True], [True, True]])
    batch = GRPOBatch(prompt(base, prompts), pixels, audio, present, [f"ctx{i}" for i in range(prompts)])
    target = torch.arange(100, 140)  # 40 of ~330 ids: a ~12% start, dense enough for groups of 4 to disagree
    seen_contexts = []

    def reward_fn(gen, contexts):
        seen_contexts.append(list(contexts))
        inside = torch.isin(gen.tokens, target) & completion_mask(gen.lengths, gen.tokens.shape[1])
        frac = inside.float().sum(1) / gen.lengths.float()
        return frac, {"target_frac": frac}

    config = GRPOConfig(steps=20, prompts_per_step=prompts, group_size=4, lr=1e-2, beta=0.05, max_new_tokens=8)
    history = train_grpo(policy, lambda step: batch, reward_fn, config, reference=reference)

    assert seen_contexts[0] == [f"ctx{i}" for i in range(prompts) for _ in range(4)]
    first = sum(h["reward_mean"] for h in history[:3]) / 3
    last = sum(h["reward_mean"] for h in history[-3:]) / 3
    assert last > first + 0.3, (first, last)
    assert all(h["reward/target_frac"] == pytest.approx(h["reward_mean"]) for h in history)
    assert all(math.isfinite(h["kl"]) and h["kl"] > 0 for h in history[1:])
    assert all(h["ratio"] == pytest.approx(1.0, abs=1e-3) for h in history)
    after = reference.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(not torch.equal(a, b) for a, b in zip(policy.parameters(), reference.parameters()))


def test_config_and_batch_validation():
    for field, value in [("group_size", 1), ("clip_eps", 0.0), ("temperature", 0.0), ("beta", -1.0),
                         ("top_k", -1), ("max_new_tokens", 0), ("lr", float("nan"))]:
        with pytest.raises(ValueError, match=field):
            GRPOConfig(**{field: value})
    ids = torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="contexts"):
        GRPOBatch(ids, None, None, None, ["only one"])
    with pytest.raises(ValueError, match="audio_values"):
        GRPOBatch(ids, None, torch.zeros(3, 8), None, ["a", "b"])


def test_answer_weight_anchors_the_answer_slot_and_nothing_else(tiny_model):
    """With a flat reward (zero advantages) and no KL, only the supervised answer-slot term moves weights."""
    from migr_rt.mi import score_modality_importance

    base, _ = tiny_model
    pixels, audio = random_inputs(base.config, 3, seed=5)
    labels = torch.tensor([0, 1, 2])

    def flat(sampled, contexts):
        return torch.ones(len(contexts)), {}

    def slot_nll(model) -> float:
        res = score_modality_importance(model, pixels, audio, target=labels)
        return float(-res.log_probs[:, 0].gather(1, labels[:, None]).mean())

    for weight in (0.0, 1.0):
        policy = copy.deepcopy(base)
        cfg = GRPOConfig(steps=1, prompts_per_step=3, group_size=2, lr=3e-3, beta=0.0, max_new_tokens=4,
                         answer_weight=weight)
        opt = make_optimizer(policy, cfg)
        batch = GRPOBatch(prompt(base, 3), pixels, audio, None, ["a", "b", "c"], labels)
        before = slot_nll(policy)
        for _ in range(5):
            stats = grpo_step(policy, None, opt, batch, flat, cfg, torch.Generator().manual_seed(0))
        if weight == 0.0:
            assert "answer_loss" not in stats
            for a, b in zip(policy.parameters(), base.parameters()):
                assert torch.equal(a, b)
        else:
            assert stats["answer_loss"] > 0 and slot_nll(policy) < before - 0.1
