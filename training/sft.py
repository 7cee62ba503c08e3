"""Supervised fine-tuning on reasoning traces: the cold start (baseline) and MIGR stage 1.

Both recipes train on traces built from the same per-modality cue
descriptions (:func:`trace_texts`); what MIGR changes is how the reasoning is
organised around the dominant modality. The R1-Omni-style baseline always
opens with the visual segment and concludes without naming a modality (it has
no notion of one); MIGR opens with the modality the base model's MI finds
dominant and its conclusion names that modality and restates its lead cue.

The first token after ``<think>`` (which segment opens) is the one decision
MIGR adds; in the token-averaged loss it is one of ~60 tokens, and measured
with weight 1 the model opened with the MI-dominant modality on 88% of
one-sided test clips while MI itself picks it on 96%, and most inconsistent
explanations came from a wrong opening. ``decision_weight`` scales that
token's loss (for the baseline it is always ``<visual>`` and costs nothing).

The answer-slot loss of the perception stage is kept beside the trace loss
(``answer_weight``), because the runtime's fast event (label + MI in
milliseconds) reads the answer slot directly and must not degrade while the
model learns to reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from migr_rt.training import distributed
from migr_rt.training.optim import adamw, warmup_cosine
from migr_rt.training.perception import TrainProgress, modality_dropout
from migr_rt.training.windows import WindowSet
from torch.nn import functional as F

from migr_rt.model.layout import prefix_ids, scoring_batch
from migr_rt.model.modeling import MigrForEmotionReasoning
from migr_rt.traces import build_trace

logger = logging.getLogger(__name__)


@dataclass
class SFTConfig:
    steps: int = 300
    batch_size: int = 32
    lr: float = 5e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 20
    weight_decay: float = 0.01
    answer_weight: float = 0.5  #: weight of the perception answer-slot loss beside the trace loss
    decision_weight: float = 5.0  #: loss weight of the first token after ``<think>`` (which segment opens)
    #: probability of hiding one modality of a sample (its segment is then left out of the trace)
    modality_dropout: float = 0.15
    grad_clip: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"SFTConfig: steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}")
        if self.lr <= 0:
            raise ValueError(f"SFTConfig.lr must be > 0, got {self.lr}")
        if not 0.0 <= self.modality_dropout <= 1.0:
            raise ValueError(f"SFTConfig.modality_dropout must be in [0, 1], got {self.modality_dropout}")


def reasoning_prompt(config) -> list[int]:
    """Prefix + ``<think>``: where generation of a rationale starts (the same for every window)."""
    return prefix_ids(config) + [config.special_token_ids["think_start"]]


def trace_texts(
    descriptions: Sequence[dict[str, str | None]],
    answers: Sequence[str],
    first: Sequence[str | None],
    summary_modality: Sequence[str | None],
    visible: torch.Tensor | None = None,
) -> list[str | None]:
    """The target trace of every window (None where its descriptions are unknown, e.g. real data).

    ``answers[i]`` is window i's label; ``first[i]`` the modality whose segment opens its trace and
    ``summary_modality[i]`` the one the summary names (None: a summary that names none, the
    baseline's; a hidden one: the opening modality). A segment is written
    only for a modality that is visible and has a non-empty description. An
    unknown description of a *visible* modality makes the trace unknown (it
    would teach leaving that evidence out); of a hidden one it does not matter.
    """
    modalities = ("visual", "audio")
    out: list[str | None] = []
    for i, desc in enumerate(descriptions):
        if any(desc.get(m) is None and (visible is None or bool(visible[i, k])) for k, m in enumerate(modalities)):
            out.append(None)
            continue
        shown = [
            m for k, m in enumerate(modalities)
            if desc.get(m) and (visible is None or bool(visible[i, k]))
        ]
        if not shown:
            out.append(None)
            continue
        lead = first[i] if first[i] in shown else shown[0]
        order = [lead] + [m for m in shown if m != lead]
        if summary_modality[i] is None:
            dominant = None  # the baseline's conclusion names no modality
        else:
            dominant = summary_modality[i] if summary_modality[i] in shown else lead
        out.append(build_trace({m: desc[m] for m in shown}, order, dominant, answers[i]))
    return out


def _trace_batch(model: MigrForEmotionReasoning, tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ids, attention_mask, targets)`` for prompt + trace; only the trace after ``<think>`` is trained."""
    prompt = reasoning_prompt(model.config)
    pad = model.config.special_token_ids["pad"]
    # build_trace starts with "<think>", which the prompt already holds
    bodies = [tokenizer.encode(t[len("<think>"):], add_special_tokens=False) + [model.config.special_token_ids["eos"]]
              for t in texts]
    length = len(prompt) + max(len(b) for b in bodies)
    ids = torch.full((len(texts), length), pad, dtype=torch.long)
    targets = torch.full_like(ids, -100)
    mask = torch.zeros_like(ids)
    for r, body in enumerate(bodies):
        seq = torch.tensor(prompt + body)
        ids[r, : len(seq)] = seq
        mask[r, : len(seq)] = 1
        targets[r, len(prompt) : len(seq)] = seq[len(prompt):]
    return ids.to(model.device), mask.to(model.device), targets.to(model.device)


def sft_loss(
    model: MigrForEmotionReasoning,
    tokenizer,
    pixels: torch.Tensor,
    audio: torch.Tensor,
    visible: torch.Tensor,
    labels: torch.Tensor,
    texts: list[str | None],
    answer_weight: float,
    decision_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Trace language-model loss (+ answer-slot cross-entropy); one encoder pass for both."""
    _, tokens = model.encode_modalities(pixels, audio)
    parts: dict[str, float] = {}
    # zero, but on the graph: a batch with nothing to train still backpropagates (and, data-parallel,
    # still reaches the gradient all-reduce instead of leaving the other ranks waiting)
    total = tokens[0].sum() * 0.0 + tokens[1].sum() * 0.0
    if answer_weight > 0:
        ids = scoring_batch(model.config, pixels.shape[0], model.device)
        hidden = model.hidden_states(model.embed_inputs(ids, modality_tokens=tokens), ids, visible)[:, -1]
        answer = F.cross_entropy(model.lm_logits(hidden).float(), model.label_token_ids[labels])
        parts["answer"] = answer.item()
        total = total + answer_weight * answer
    rows = [i for i, t in enumerate(texts) if t]
    if rows:
        ids, mask, targets = _trace_batch(model, tokenizer, [texts[i] for i in rows])
        sel = torch.tensor(rows, device=model.device)
        hidden = model.hidden_states(
            model.embed_inputs(ids, modality_tokens=tuple(t[sel] for t in tokens)), ids, visible[sel], attention_mask=mask
        )
        logits = model.lm_logits(hidden[:, :-1]).float()
        per_token = F.cross_entropy(logits.transpose(1, 2), targets[:, 1:], ignore_index=-100, reduction="none")
        weight = (targets[:, 1:] != -100).float()
        weight[:, len(reasoning_prompt(model.config)) - 1] *= decision_weight  # predicts the opening segment tag
        trace = (per_token * weight).sum() / weight.sum()
        parts["trace"] = trace.item()
        total = total + trace
    return total, parts


def train_sft(
    model: MigrForEmotionReasoning,
    tokenizer,
    windows: WindowSet,
    first: Sequence[str | None],
    summary_modality: Sequence[str | None],
    config: SFTConfig,
    on_progress: Callable[[TrainProgress], None] | None = None,
) -> dict:
    """Fine-tune in place on the traces of ``windows``; return metrics (loss, timing, config)."""
    labels = list(model.config.labels)
    answers = [labels[int(i)] for i in windows.labels]
    if all(t is None for t in trace_texts(windows.descriptions, answers, first, summary_modality, windows.present)):
        if any(t for desc in windows.descriptions for t in desc.values()):
            raise ValueError(
                "no window has a trace to train: every described window lacks the description of a modality it "
                "shows (null or missing in the descriptions file); describe each present modality, \"\" when it "
                "shows nothing notable"
            )
        raise ValueError(
            "no window has cue descriptions: trace SFT needs per-modality descriptions (the synthetic corpus has "
            "them; for a real dataset name a descriptions file in its spec, e.g. "
            "dfew:/data/DFEW?fold=1&descriptions=/data/dfew_descriptions.jsonl)"
        )
    dist = distributed.current()
    gen = torch.Generator().manual_seed(config.seed)
    dist.prepare(model)  # FSDP: shard in place before the optimiser sees the parameters (else a no-op)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = adamw(params, config.lr, config.weight_decay)

    def lr_at(step: int) -> float:
        return warmup_cosine(step, config.steps, config.lr, config.warmup_steps, config.min_lr_ratio)

    model.train()
    start = time.monotonic()
    order, cursor = torch.randperm(len(windows), generator=gen), 0
    running: float | None = None
    running_parts: dict[str, float] = {}
    for step in range(config.steps):
        if cursor + config.batch_size > len(order):
            order, cursor = torch.randperm(len(windows), generator=gen), 0
        global_idx = order[cursor : cursor + config.batch_size]
        cursor += config.batch_size
        visible_all = modality_dropout(windows.present[global_idx], config.modality_dropout, gen)
        idx, visible = dist.shard(global_idx), dist.shard(visible_all)
        pixels, audio, present, batch_labels = windows.batch(idx)
        rows = idx.tolist()
        texts = trace_texts([windows.descriptions[i] for i in rows], [answers[i] for i in rows],
                            [first[i] for i in rows], [summary_modality[i] for i in rows], visible)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss, parts = sft_loss(model, tokenizer, pixels, audio, visible, batch_labels, texts, config.answer_weight,
                               config.decision_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        dist.sync_gradients(params)
        dist.clip_grad_norm(list(model.parameters()), config.grad_clip)
        opt.step()
        running = loss.item() if running is None else 0.9 * running + 0.1 * loss.item()
        for name, value in parts.items():
            running_parts[name] = value if name not in running_parts else 0.9 * running_parts[name] + 0.1 * value
        last = step + 1 == config.steps
        if on_progress is not None and ((step + 1) % 10 == 0 or last):
            elapsed = time.monotonic() - start
            on_progress(TrainProgress(step + 1, config.steps, running, lr_at(step), elapsed,
                                      elapsed / (step + 1) * (config.steps - step - 1), dict(running_parts)))
    model.eval()
    return {"train_loss": running, "train_loss_parts": running_parts, "seconds": time.monotonic() - start,
            "config": asdict(config)}
