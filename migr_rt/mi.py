"""Modality Importance (MI): the torch reference.

MI_m(x, y) = log p(y | x) - log p(y | x with modality m masked), where
p(. | x) is the softmax over the label tokens only, read at the answer slot.
``y`` is the ground-truth label when building training data and the
predicted label at run time. Normalised importance is a softmax of MI over
the modalities that are present; the dominant modality is its argmax.

Scoring is batched: B windows x (1 + M) variants (all present modalities
visible, then each one masked) in one decoder pass. The encoders run once per
window; the variants share the encoder outputs and differ only in their key
masks. This reference materialises the (1 + M) copies of the embeddings; the
fused Triton kernel in ``migr_rt.kernels`` does the same without copies and
is tested against :func:`importance_from_log_probs`. The result type lives in
:mod:`migr_rt.importance` (torch-free, for the runtime).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from migr_rt.importance import ModalityImportance
from migr_rt.model.layout import scoring_batch

if TYPE_CHECKING:  # the decoder wrapper imports transformers' modeling stack
    from migr_rt.model.modeling import MigrForEmotionReasoning


def variant_visibility(present: torch.Tensor) -> torch.Tensor:
    """``(B, M)`` presence -> ``(B, 1+M, M)`` visibility of each variant (full, then each modality masked)."""
    bsz, m = present.shape
    eye = torch.eye(m, dtype=torch.bool, device=present.device)
    variants = torch.cat([torch.zeros(1, m, dtype=torch.bool, device=present.device), eye], dim=0)  # (1+M, M)
    return present.bool()[:, None, :] & ~variants[None]


def importance_from_log_probs(
    log_probs: torch.Tensor, target: torch.Tensor, present: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MI, normalised importance and dominant modality from per-variant label log-probs.

    ``log_probs`` ``(B, 1+M, C)``, ``target`` ``(B,)``, ``present`` ``(B, M)``.
    A pure function of its inputs: the fused kernel's reference.
    """
    bsz, variants, _ = log_probs.shape
    present = present.bool()
    picked = log_probs.gather(-1, target.view(bsz, 1, 1).expand(bsz, variants, 1)).squeeze(-1)  # (B, 1+M)
    mi = (picked[:, :1] - picked[:, 1:]).masked_fill(~present, 0.0)
    any_present = present.any(dim=1, keepdim=True)
    scores = mi.masked_fill(~present, float("-inf"))
    importance = torch.where(any_present, scores.softmax(dim=-1), torch.zeros_like(mi))
    importance = torch.nan_to_num(importance, nan=0.0)
    dominant = torch.where(any_present.squeeze(1), scores.argmax(dim=-1), torch.full_like(target, -1))
    return mi, importance, dominant


@torch.no_grad()
def score_modality_importance(
    model: MigrForEmotionReasoning,
    pixel_values: torch.Tensor | None,
    audio_values: torch.Tensor | None,
    *,
    present: torch.Tensor | None = None,
    target: torch.Tensor | None = None,
    input_ids: torch.Tensor | None = None,
    answer_positions: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
) -> ModalityImportance:
    """MI for a batch in one decoder forward of B x (1 + M) variants.

    ``pixel_values`` ``(B, T, 3, S, S)`` and ``audio_values`` ``(B, S)``; a
    whole modality may be ``None`` (absent for the batch), and ``present``
    ``(B, M)`` marks per-window absence (e.g. a silent track). By default the
    sequence is the scoring layout and the answer slot its last position;
    ``input_ids``/``answer_positions`` score other sequences (e.g. after a
    reasoning trace), right-padded with ``attention_mask``.
    """
    cfg = model.config
    device = model.device
    bsz = (pixel_values if pixel_values is not None else audio_values).shape[0]
    num_m = cfg.num_modalities
    inputs_present = torch.tensor([pixel_values is not None, audio_values is not None], device=device)
    present = inputs_present[None].expand(bsz, num_m) if present is None else present.to(device).bool() & inputs_present
    if input_ids is None:
        input_ids = scoring_batch(cfg, bsz, device)
    if answer_positions is None:
        answer_positions = torch.full((bsz,), input_ids.shape[1] - 1, dtype=torch.long, device=device)

    tokens = (
        model.encode_visual(pixel_values.to(device)) if pixel_values is not None else None,
        model.encode_audio(audio_values.to(device)) if audio_values is not None else None,
    )
    embeds = model.embed_inputs(input_ids, modality_tokens=tokens)
    variants = 1 + num_m
    visible = variant_visibility(present).reshape(bsz * variants, num_m)
    rep = lambda t: None if t is None else t.repeat_interleave(variants, dim=0)  # noqa: E731
    hidden = model.hidden_states(rep(embeds), rep(input_ids), visible, attention_mask=rep(attention_mask))
    rows = torch.arange(bsz * variants, device=device)
    at_answer = hidden[rows, rep(answer_positions)]
    log_probs = model.label_logits(at_answer).float().log_softmax(dim=-1).reshape(bsz, variants, -1)
    if target is None:
        target = log_probs[:, 0].argmax(dim=-1)
    target = target.to(device)
    mi, importance, dominant = importance_from_log_probs(log_probs, target, present)
    return ModalityImportance(log_probs, target, mi, importance, dominant, present)
