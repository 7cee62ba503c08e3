"""Greedy rationale decoding over any backend: one prefill, then one step per token.

The same loop as :func:`migr_rt.generate.generate` (which training uses for
sampling on a torch model), written against the backend interface so the
runtime decodes identically on torch, onnxruntime and TensorRT.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from migr_rt.backends.base import Backend, ModalityTokens


@dataclass
class Decoded:
    tokens: torch.Tensor  #: (B, N) chosen ids, ``pad`` after a row stopped
    lengths: torch.Tensor  #: (B,) tokens generated per row, its stop token included


def _stops(config, stop_token_ids: Sequence[int] | None) -> torch.Tensor:
    """The ids that end a row: ``stop_token_ids``, by default the answer's end tag and eos."""
    if stop_token_ids is None:
        stop_token_ids = (config.special_token_ids["answer_end"], config.special_token_ids["eos"])
    return torch.tensor(list(stop_token_ids), dtype=torch.long)


def iter_greedy(
    backend: Backend,
    input_ids: torch.Tensor,
    tokens: ModalityTokens,
    visible: torch.Tensor,
    *,
    max_new_tokens: int = 128,
    stop_token_ids: Sequence[int] | None = None,
) -> Iterator[torch.Tensor]:
    """Yield each step's ``(B,)`` argmax ids as soon as they are chosen (``pad`` for rows that stopped).

    Stops after the step where every row has emitted a stop token, or after
    ``max_new_tokens``; closing the generator early skips the remaining steps
    (that is how a stale rationale is cancelled).
    """
    cfg = backend.config
    stops = _stops(cfg, stop_token_ids)
    pad = torch.full((input_ids.shape[0],), cfg.special_token_ids["pad"], dtype=torch.long)
    done = torch.zeros(input_ids.shape[0], dtype=torch.bool)
    logits, state = backend.prefill(input_ids, tokens, visible)
    for step in range(max_new_tokens):
        nxt = torch.where(done, pad, logits.argmax(dim=-1))
        yield nxt
        done |= torch.isin(nxt, stops)
        if bool(done.all()) or step + 1 == max_new_tokens:
            return
        logits, state = backend.step(nxt, state)


def greedy_decode(
    backend: Backend,
    input_ids: torch.Tensor,
    tokens: ModalityTokens,
    visible: torch.Tensor,
    *,
    max_new_tokens: int = 128,
    stop_token_ids: Sequence[int] | None = None,
    on_token: Callable[[int, torch.Tensor], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Decoded:
    """Continue ``input_ids`` ``(B, L)`` with the argmax token until every row stops or ``max_new_tokens``.

    ``visible`` ``(B, M)`` hides modalities for the whole rationale;
    ``on_token(step, ids)`` sees each step's ``(B,)`` ids as soon as they are
    chosen (streaming); ``cancelled()`` returning True stops early.
    """
    bsz = input_ids.shape[0]
    cfg = backend.config
    stops = _stops(cfg, stop_token_ids)
    steps: list[torch.Tensor] = []
    lengths = torch.zeros(bsz, dtype=torch.long)
    done = torch.zeros(bsz, dtype=torch.bool)
    decoding = iter_greedy(backend, input_ids, tokens, visible, max_new_tokens=max_new_tokens,
                           stop_token_ids=stop_token_ids)
    for step, nxt in enumerate(decoding):
        steps.append(nxt)
        lengths += (~done).long()
        done |= torch.isin(nxt, stops)
        if on_token is not None:
            on_token(step, nxt)
        if cancelled is not None and cancelled():
            decoding.close()
            break
    out = torch.stack(steps, dim=1) if steps else torch.zeros(bsz, 0, dtype=torch.long)
    return Decoded(out, lengths)
