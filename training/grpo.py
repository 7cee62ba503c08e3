"""Group Relative Policy Optimisation (GRPO) for the omni model.

Used by the baseline (accuracy + format rewards) and by MIGR stage 2
(modality-aware rewards), see DESIGN.md "Two-stage training". We own this
loop rather than use TRL's ``GRPOTrainer`` because that trainer generates
from text prompts through Hugging Face ``generate`` and cannot feed our
per-sample pixel/audio inputs and modality masks; ``migr_rt.generate`` can.

One step (:func:`grpo_step`):

1. sample ``group_size`` completions for every prompt (the policy in eval
   mode, no grad), with the modality visibility of each sample;
2. score them with a caller-supplied ``reward_fn`` (the caller decodes);
3. advantage = reward standardised within its group (:func:`group_advantages`),
   so no value model is needed;
4. one policy-gradient update on the clipped surrogate minus ``beta`` times a
   per-token KL estimate to a frozen reference (:func:`grpo_loss`).

Old log-probs (the ratio's denominator) are the log-probs ``generate()``
reported for the sampled tokens when ``top_k == 0``: both ``generate()``
and :func:`completion_logprobs` then use ``log_softmax(logits / temperature)``,
and the model computes the same function in train and eval mode (no
dropout, GroupNorm rather than BatchNorm), so re-running the policy would
only repeat work. With ``top_k > 0`` the sampling distribution is truncated
while :func:`completion_logprobs` is not, so the old log-probs are instead
recomputed by a no-grad :func:`completion_logprobs` pass; the ratio then
compares like with like (the samples are slightly off-policy, as with any
truncated sampler). Either way the update is on-policy: the ratio is ~1 and
the clip only binds if a caller runs several updates on the same samples.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from migr_rt.training import distributed
from migr_rt.training.optim import adamw
from torch import nn

from migr_rt.generate import Generated, GenerationConfig, continuation_inputs, generate
from migr_rt.model.layout import scoring_batch
from migr_rt.model.modeling import MigrForEmotionReasoning

logger = logging.getLogger(__name__)

#: ``reward_fn(completions, contexts_repeated) -> (total (P*G,), {term name: (P*G,)})``
RewardFn = Callable[[Generated, list], tuple[torch.Tensor, dict[str, torch.Tensor]]]


@dataclass
class GRPOConfig:
    steps: int = 200
    prompts_per_step: int = 8
    group_size: int = 4  #: completions sampled per prompt; advantages are relative within this group
    lr: float = 5e-5
    weight_decay: float = 0.0
    clip_eps: float = 0.2  #: PPO clip range: the ratio is clipped to [1 - clip_eps, 1 + clip_eps]
    beta: float = 0.02  #: KL weight to the frozen reference; 0 disables the reference pass
    temperature: float = 1.0  #: sampling temperature; the loss uses the same tempered distribution
    top_k: int = 0  #: 0 = sample from the full distribution (old log-probs come from generate())
    max_new_tokens: int = 96
    grad_clip: float = 1.0
    #: weight of a supervised answer-slot loss on the step's prompts (needs ``GRPOBatch.labels``). GRPO moves
    #: weights the runtime's fast label (read at the answer slot, no generation) shares; measured without it,
    #: 150 MIGR steps took held-out answer-slot accuracy from 0.931 to 0.898.
    answer_weight: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            ("steps", self.steps >= 1, ">= 1"),
            ("prompts_per_step", self.prompts_per_step >= 1, ">= 1"),
            # a group of one has no relative advantage: every advantage would be 0
            ("group_size", self.group_size >= 2, ">= 2"),
            ("lr", self.lr > 0, "> 0"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("clip_eps", 0 < self.clip_eps < 1, "in (0, 1)"),
            ("beta", self.beta >= 0, ">= 0"),
            # greedy decoding would give identical group members and no sampling distribution
            ("temperature", self.temperature > 0, "> 0"),
            ("top_k", self.top_k >= 0, ">= 0"),
            ("max_new_tokens", self.max_new_tokens >= 1, ">= 1"),
            ("grad_clip", self.grad_clip > 0, "> 0"),
            ("answer_weight", self.answer_weight >= 0, ">= 0"),
        ]
        for name, ok, rule in checks:
            value = getattr(self, name)
            if not ok or (isinstance(value, float) and not math.isfinite(value)):
                raise ValueError(f"GRPOConfig.{name} must be {rule}, got {value!r}")

    def generation_config(self) -> GenerationConfig:
        """Sampling settings for ``generate()`` (its default stop tokens: ``</answer>`` and eos)."""
        return GenerationConfig(max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_k=self.top_k)


@dataclass
class GRPOBatch:
    """``P`` prompts: ids ``(P, L)`` (one length for all rows), their inputs and per-prompt reward contexts.

    ``present`` ``(P, M)`` hides modalities per prompt (absent inputs are
    hidden anyway); ``contexts`` are opaque to this module and handed to
    ``reward_fn`` (e.g. the label, the dominant modality, the cues shown).
    """

    prompt_ids: torch.Tensor
    pixel_values: torch.Tensor | None
    audio_values: torch.Tensor | None
    present: torch.Tensor | None
    contexts: Sequence[Any]
    labels: torch.Tensor | None = None  #: ``(P,)`` label indices, for ``GRPOConfig.answer_weight``

    def __post_init__(self) -> None:
        if self.prompt_ids.ndim != 2:
            raise ValueError(f"prompt_ids must be (P, L), got shape {tuple(self.prompt_ids.shape)}")
        p = self.prompt_ids.shape[0]
        for name in ("pixel_values", "audio_values", "present", "labels"):
            value = getattr(self, name)
            if value is not None and value.shape[0] != p:
                raise ValueError(f"{name} has {value.shape[0]} rows but prompt_ids has {p}")
        if len(self.contexts) != p:
            raise ValueError(f"contexts has {len(self.contexts)} entries but prompt_ids has {p} rows")

    def __len__(self) -> int:
        return self.prompt_ids.shape[0]


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """``(P, G)`` rewards -> advantages ``(r - group mean) / (group std + eps)`` (population std).

    Standardising within the group of completions of one prompt replaces a
    learned value baseline; a group whose rewards are all equal carries no
    signal and gets advantage 0.
    """
    if rewards.ndim != 2:
        raise ValueError(f"rewards must be (P, G), got shape {tuple(rewards.shape)}")
    rewards = rewards.float()
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True, unbiased=False)
    return (rewards - mean) / (std + eps)


def completion_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """``(N, width)`` bool: True for each row's first ``lengths[i]`` tokens (the stop token included)."""
    return torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]


def completion_logprobs(
    model: MigrForEmotionReasoning,
    prompt_ids: torch.Tensor,
    completions: torch.Tensor,
    lengths: torch.Tensor,
    pixel_values: torch.Tensor | None,
    audio_values: torch.Tensor | None,
    present: torch.Tensor | None,
    temperature: float,
) -> torch.Tensor:
    """Teacher-forced log-probs ``(N, T)`` of ``completions`` under ``log_softmax(logits / temperature)``.

    One forward over ``prompt + completion`` with the per-row modality
    visibility, so the numbers match what ``generate()`` reports for the same
    tokens with ``top_k == 0``. Padding after a row's stop token sits after
    every scored position, so causal attention keeps it out of the result;
    positions past ``lengths`` are 0. Differentiable when grad is enabled.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if prompt_ids.ndim != 2 or completions.ndim != 2 or prompt_ids.shape[0] != completions.shape[0]:
        raise ValueError(
            f"prompt_ids (N, L) and completions (N, T) need the same N, got shapes "
            f"{tuple(prompt_ids.shape)} and {tuple(completions.shape)}"
        )
    device = model.device
    n, plen = prompt_ids.shape
    width = completions.shape[1]
    if width == 0:
        return torch.zeros(n, 0, device=device)
    ids, embeds, attention_mask = continuation_inputs(model, prompt_ids, completions, pixel_values, audio_values)
    completions = completions.to(device)
    out = model(
        ids,
        pixel_values.to(device) if pixel_values is not None else None,
        audio_values.to(device) if audio_values is not None else None,
        modality_visible=present.to(device) if present is not None else None,
        attention_mask=attention_mask,
        inputs_embeds=embeds,
    )
    # logits at position i predict token i + 1: completion token j is predicted at plen - 1 + j
    scaled = out.logits[:, plen - 1 : plen - 1 + width].float() / temperature
    logp = scaled.gather(-1, completions[..., None]).squeeze(-1) - scaled.logsumexp(-1)
    return logp.masked_fill(~completion_mask(lengths.to(device), width), 0.0)


def grpo_loss(
    new_logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float,
    beta: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The GRPO objective, negated for minimisation, and token-level statistics.

    Per token: ``ratio = exp(new - old)``, surrogate
    ``min(ratio * A, clamp(ratio, 1 - eps, 1 + eps) * A)``, minus
    ``beta * kl`` with the k3 estimator ``exp(ref - new) - (ref - new) - 1``
    (non-negative, unbiased for KL(policy || reference); skipped when
    ``ref_logp`` is None or ``beta == 0``). Each sequence's objective is its
    masked token mean and the loss is minus the mean over sequences, so long
    and short completions weigh the same per sequence.

    Stats (means over unmasked tokens, except ``advantage``, a mean over
    sequences): ``ratio``, ``clip_frac`` (tokens where the clip binds, i.e.
    zeroes the gradient), ``kl``, ``advantage``.
    """
    if not (new_logp.shape == old_logp.shape == mask.shape) or new_logp.ndim != 2:
        raise ValueError(
            f"new_logp, old_logp and mask must share one (N, T) shape, got {tuple(new_logp.shape)}, "
            f"{tuple(old_logp.shape)}, {tuple(mask.shape)}"
        )
    if ref_logp is not None and ref_logp.shape != new_logp.shape:
        raise ValueError(f"ref_logp must have shape {tuple(new_logp.shape)}, got {tuple(ref_logp.shape)}")
    if advantages.shape != new_logp.shape[:1]:
        raise ValueError(f"advantages must have shape ({new_logp.shape[0]},), got {tuple(advantages.shape)}")
    mask = mask.bool()
    weight = mask.to(new_logp.dtype)
    # Padded positions may hold anything: zero their differences so exp() stays finite and gets no gradient.
    ratio = torch.where(mask, new_logp - old_logp.detach(), 0.0).exp()
    adv = advantages.detach().to(new_logp.dtype)[:, None]
    unclipped = ratio * adv
    clipped = ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv
    objective = torch.minimum(unclipped, clipped)
    kl = torch.zeros_like(new_logp)
    if ref_logp is not None and beta > 0:
        delta = torch.where(mask, ref_logp.detach() - new_logp, 0.0)
        kl = delta.exp() - delta - 1
        objective = objective - beta * kl
    tokens = weight.sum(dim=1).clamp(min=1)
    per_sequence = (objective * weight).sum(dim=1) / tokens
    loss = -per_sequence.mean()

    with torch.no_grad():
        n_tokens = weight.sum().clamp(min=1)
        binds = ((ratio > 1 + clip_eps) & (adv > 0)) | ((ratio < 1 - clip_eps) & (adv < 0))
        stats = {
            "ratio": float((ratio * weight).sum() / n_tokens),
            "clip_frac": float((binds & mask).sum() / n_tokens),
            "kl": float((kl * weight).sum() / n_tokens),
            "advantage": float(advantages.float().mean()) if advantages.numel() else 0.0,
        }
    return loss, stats


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with every parameter frozen: the KL reference, which must never move."""
    reference = copy.deepcopy(model).eval()
    reference.requires_grad_(False)
    return reference


def make_optimizer(model: nn.Module, config: GRPOConfig) -> torch.optim.Optimizer:
    """AdamW with ``config.lr``; weight decay on matrices only (as in the perception stage), not biases/norms."""
    return adamw(model.parameters(), config.lr, config.weight_decay)


def _repeat(value: torch.Tensor | None, times: int, device: torch.device) -> torch.Tensor | None:
    return value.to(device).repeat_interleave(times, dim=0) if value is not None else None


def grpo_step(
    policy: MigrForEmotionReasoning,
    reference: MigrForEmotionReasoning | None,
    optimizer: torch.optim.Optimizer,
    batch: GRPOBatch,
    reward_fn: RewardFn,
    config: GRPOConfig,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Sample, score, and take one GRPO update of ``policy`` in place; return the step's statistics.

    Rows are laid out prompt-major: row ``p * G + g`` is completion ``g`` of
    prompt ``p``, and ``reward_fn`` gets the contexts repeated the same way.
    ``generator`` (on the policy's device) makes sampling reproducible. The
    policy is in train mode only while the loss is computed and is left in
    eval mode.

    Stats: ``loss``, ``reward_mean``, ``reward_std``, ``reward/<term>`` for
    each reward term, ``ratio``, ``clip_frac``, ``kl``, ``advantage``,
    ``zero_std_frac`` (groups with equal rewards, which carry no signal),
    ``completion_len``, ``grad_norm``, ``seconds``.
    """
    if config.beta > 0 and reference is None:
        raise ValueError("GRPOConfig.beta > 0 needs a reference model (frozen_copy(policy)); set beta=0 to train without")
    start = time.perf_counter()
    device = policy.device
    n_prompts, group = len(batch), config.group_size
    prompt_ids = _repeat(batch.prompt_ids, group, device)
    pixels = _repeat(batch.pixel_values, group, device)
    audio = _repeat(batch.audio_values, group, device)
    present = _repeat(batch.present, group, device)

    policy.eval()
    sampled = generate(policy, prompt_ids, pixels, audio, present=present,
                       config=config.generation_config(), generator=generator)
    contexts = [context for context in batch.contexts for _ in range(group)]
    rewards, terms = reward_fn(sampled, contexts)
    rewards = torch.as_tensor(rewards, dtype=torch.float32, device=device)
    if rewards.shape != (n_prompts * group,):
        raise ValueError(f"reward_fn must return ({n_prompts * group},) rewards, got shape {tuple(rewards.shape)}")
    advantages = group_advantages(rewards.view(n_prompts, group)).reshape(-1)

    width = sampled.tokens.shape[1]
    mask = completion_mask(sampled.lengths, width)

    def logprobs(model: MigrForEmotionReasoning) -> torch.Tensor:
        return completion_logprobs(model, prompt_ids, sampled.tokens, sampled.lengths, pixels, audio, present,
                                   config.temperature)

    if config.top_k == 0:
        old_logp = sampled.logprobs  # same distribution as completion_logprobs (module docstring)
    else:
        with torch.no_grad():
            old_logp = logprobs(policy)
    ref_logp = None
    if reference is not None and config.beta > 0:
        with torch.no_grad():
            ref_logp = logprobs(reference)

    policy.train()
    loss, loss_stats = grpo_loss(logprobs(policy), old_logp, ref_logp, advantages, mask, config.clip_eps, config.beta)
    if config.answer_weight > 0 and batch.labels is not None:
        scoring = scoring_batch(policy.config, n_prompts, device)
        slot = policy(scoring, batch.pixel_values.to(device) if batch.pixel_values is not None else None,
                      batch.audio_values.to(device) if batch.audio_values is not None else None,
                      modality_visible=batch.present.to(device) if batch.present is not None else None).logits[:, -1]
        answer = nn.functional.cross_entropy(slot.float(), policy.label_token_ids[batch.labels.to(device)])
        loss = loss + config.answer_weight * answer
        loss_stats["answer_loss"] = float(answer.detach())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    dist = distributed.current()
    dist.sync_gradients(list(policy.parameters()))  # no-op in a single process
    grad_norm = dist.clip_grad_norm(list(policy.parameters()), config.grad_clip)
    optimizer.step()
    policy.eval()

    groups = rewards.view(n_prompts, group)
    stats = {
        "loss": float(loss.detach()),
        "reward_mean": float(rewards.mean()),
        "reward_std": float(rewards.std(unbiased=False)),
        **{f"reward/{name}": float(torch.as_tensor(value, dtype=torch.float32).mean()) for name, value in terms.items()},
        **loss_stats,
        "zero_std_frac": float((groups.std(dim=1, unbiased=False) == 0).float().mean()),
        "completion_len": float(sampled.lengths.float().mean()),
        "grad_norm": float(grad_norm),
        "seconds": time.perf_counter() - start,
    }
    return stats


def train_grpo(
    policy: MigrForEmotionReasoning,
    batches: Callable[[int], GRPOBatch],
    reward_fn: RewardFn,
    config: GRPOConfig,
    *,
    reference: MigrForEmotionReasoning | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Run ``config.steps`` GRPO steps in place; ``batches(step)`` supplies each step's prompts.

    The reference defaults to a frozen copy of the policy as it is now (only
    made when ``beta > 0``); the optimiser is :func:`make_optimizer`'s and
    sampling is seeded with ``config.seed``. Returns every step's stats.
    """
    if config.beta > 0 and reference is None:
        reference = frozen_copy(policy)
    optimizer = make_optimizer(policy, config)
    generator = torch.Generator(device=policy.device).manual_seed(config.seed)
    history = []
    for step in range(config.steps):
        stats = grpo_step(policy, reference, optimizer, batches(step), reward_fn, config, generator)
        history.append(stats)
        logger.info("grpo step %d/%d: loss %.4f reward %.3f kl %.4f len %.1f (%.2fs)", step + 1, config.steps,
                    stats["loss"], stats["reward_mean"], stats["kl"], stats["completion_len"], stats["seconds"])
        if on_step is not None:
            on_step(step, stats)
    return history
