"""Batched decoding with a KV cache and modality masks kept on the cached keys.

One loop serves evaluation (greedy), GRPO (sampling, with the log-probs of
the sampled tokens) and the streaming runtime (a per-token callback and a
cancel hook). Masked modalities stay masked for every generated token: the
cache's key visibility is carried from step to step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from migr_rt.backends.decode import AnswerAnchor

if TYPE_CHECKING:  # the decoder wrapper imports transformers' modeling stack
    from migr_rt.model.modeling import MigrForEmotionReasoning


@dataclass
class GenerationConfig:
    max_new_tokens: int = 96
    temperature: float = 0.0  #: 0 = greedy; otherwise sample from softmax(logits / temperature)
    top_k: int = 0  #: sample among the k most likely tokens only (0 = all)
    #: stop a row at any of these tokens (default: ``</answer>`` and eos)
    stop_token_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")


@dataclass
class Generated:
    """Generated continuations: ``tokens`` ``(B, N)`` (pad after each row's stop), ``lengths`` ``(B,)``
    (tokens up to and including the stop token), ``logprobs`` ``(B, N)`` of each generated token under
    the distribution it was drawn from (0 after the stop)."""

    tokens: torch.Tensor
    lengths: torch.Tensor
    logprobs: torch.Tensor

    def texts(self, tokenizer) -> list[str]:
        return [tokenizer.decode(row[:n].tolist()) for row, n in zip(self.tokens, self.lengths.tolist())]


@torch.no_grad()
def generate(
    model: MigrForEmotionReasoning,
    input_ids: torch.Tensor,
    pixel_values: torch.Tensor | None,
    audio_values: torch.Tensor | None,
    *,
    present: torch.Tensor | None = None,
    config: GenerationConfig | None = None,
    generator: torch.Generator | None = None,
    on_token: Callable[[int, torch.Tensor], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    anchor: AnswerAnchor | None = None,
) -> Generated:
    """Continue ``input_ids`` ``(B, L)`` (same length for every row, e.g. the scoring prefix + ``<think>``).

    ``present`` ``(B, M)`` hides modalities per row (absent inputs are hidden
    anyway). ``on_token(step, tokens)`` sees each step's ``(B,)`` tokens as
    they are chosen; ``cancelled()`` returning True stops early (what was
    generated so far is returned). ``anchor`` (greedy only) closes each row
    with its given label, as the runtime's decoding does.
    """
    config = config or GenerationConfig()
    cfg = model.config
    if anchor is not None and config.temperature != 0:
        raise ValueError("an answer anchor needs greedy decoding (temperature 0)")
    answer_start = anchor.start(cfg, input_ids.shape[0]) if anchor is not None else -1
    previous = input_ids[:, -1].to(model.device)
    stops = config.stop_token_ids
    if stops is None:
        stops = (cfg.special_token_ids["answer_end"], cfg.special_token_ids["eos"])
    stop_ids = torch.tensor(stops, device=model.device)
    pad = cfg.special_token_ids["pad"]
    bsz = input_ids.shape[0]

    out = model(
        input_ids.to(model.device),
        pixel_values.to(model.device) if pixel_values is not None else None,
        audio_values.to(model.device) if audio_values is not None else None,
        modality_visible=present.to(model.device) if present is not None else None,
        use_cache=True,
    )
    tokens = torch.full((bsz, config.max_new_tokens), pad, dtype=torch.long, device=model.device)
    logprobs = torch.zeros(bsz, config.max_new_tokens, device=model.device)
    lengths = torch.zeros(bsz, dtype=torch.long, device=model.device)
    done = torch.zeros(bsz, dtype=torch.bool, device=model.device)
    logits = out.logits[:, -1].float()
    for step in range(config.max_new_tokens):
        nxt, lp = _choose(logits, config, generator)
        if anchor is not None:
            before = previous.cpu().numpy()  # one copy per step; the anchor works in numpy, as the runtime does
            if (before == answer_start).any():  # a row opened the answer: its label, and that label's log-prob
                nxt = torch.from_numpy(anchor.choose(before, nxt.cpu().numpy(), answer_start)).to(nxt.device)
                lp = logits.log_softmax(-1).gather(-1, nxt[:, None]).squeeze(-1)
        nxt = previous = torch.where(done, torch.full_like(nxt, pad), nxt)
        tokens[:, step] = nxt
        logprobs[:, step] = torch.where(done, torch.zeros_like(lp), lp)
        lengths += (~done).long()
        if on_token is not None:
            on_token(step, nxt)
        done |= torch.isin(nxt, stop_ids)
        if bool(done.all()) or (cancelled is not None and cancelled()) or step + 1 == config.max_new_tokens:
            break
        out = model(nxt[:, None], cache=out.cache, use_cache=True, past_key_visible=out.key_visible)
        logits = out.logits[:, -1].float()
    used = int(lengths.max()) if bsz else 0
    return Generated(tokens[:, :used], lengths, logprobs[:, :used])


def continuation_inputs(
    model: MigrForEmotionReasoning,
    prompt_ids: torch.Tensor,
    tokens: torch.Tensor,
    pixel_values: torch.Tensor | None,
    audio_values: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ids, inputs_embeds, attention_mask)`` for one teacher-forced pass over prompt + generated ``tokens``
    that sees exactly what :func:`generate` saw.

    Encoder outputs go into the prompt's placeholders only. :func:`generate`
    feeds each generated token without modality inputs, so a generated id that
    happens to be a modality placeholder keeps its plain embedding and is
    hidden as a key; the attention mask does the same here.
    """
    device = model.device
    prompt_ids, tokens = prompt_ids.to(device), tokens.to(device)
    embeds = torch.cat([
        model.embed_inputs(
            prompt_ids,
            pixel_values.to(device) if pixel_values is not None else None,
            audio_values.to(device) if audio_values is not None else None,
        ),
        model.get_input_embeddings()(tokens),
    ], dim=1)
    placeholder = model.modality_token_masks(tokens).any(dim=1)
    attention_mask = torch.cat([torch.ones_like(prompt_ids, dtype=torch.bool), ~placeholder], dim=1)
    return torch.cat([prompt_ids, tokens], dim=1), embeds, attention_mask


def _choose(logits: torch.Tensor, config: GenerationConfig, generator: torch.Generator | None):
    if config.temperature == 0:
        lp = logits.log_softmax(-1)
        nxt = lp.argmax(-1)
        return nxt, lp.gather(-1, nxt[:, None]).squeeze(-1)
    scaled = logits / config.temperature
    if config.top_k:
        kth = scaled.topk(min(config.top_k, scaled.shape[-1]), dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    lp = scaled.log_softmax(-1)
    nxt = torch.multinomial(lp.exp(), 1, generator=generator).squeeze(-1)
    return nxt, lp.gather(-1, nxt[:, None]).squeeze(-1)
