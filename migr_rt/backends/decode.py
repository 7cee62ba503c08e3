"""Greedy rationale decoding over any backend: one prefill, then one step per token.

The same loop as :func:`migr_rt.generate.generate` (which training uses for
sampling on a torch model), written against the backend interface so the
runtime decodes identically on torch, onnxruntime and TensorRT.

An :class:`AnswerAnchor` closes a rationale with a label chosen before it
(the runtime's fast label): the rationale is generated after the answer slot
has been read, and left to itself its closing ``<answer>`` can name another
emotion than the label the caller already reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from migr_rt.backends.base import Backend, ModalityTokens


@dataclass
class Decoded:
    tokens: torch.Tensor  #: (B, N) chosen ids, ``pad`` after a row stopped
    lengths: torch.Tensor  #: (B,) tokens generated per row, its stop token included


@dataclass
class AnswerAnchor:
    """The token after ``<answer>`` is ``label_ids[row]``, not the argmax; the argmax is kept in ``model_ids``.

    Why anchor: on the bundled model's held-out clips the fast label is the
    more accurate answer and the one the explanation more often argues for
    (``benchmarks/results/rationale_answer.md``). The model's own choice is
    kept so a caller can still see when its rationale would have closed
    differently. A row that never writes ``<answer>`` gets no answer: the
    anchor does not finish a rationale the model did not finish.
    """

    label_ids: torch.Tensor  #: (B,) the token id of each row's label
    #: (B,) the id the model would have chosen after its first ``<answer>``; -1 where it wrote none
    model_ids: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.label_ids = torch.as_tensor(self.label_ids, dtype=torch.long)
        if self.label_ids.dim() != 1:
            raise ValueError(f"AnswerAnchor label_ids must be one token id per row, got shape "
                             f"{tuple(self.label_ids.shape)}")
        self.model_ids = torch.full_like(self.label_ids, -1)

    def start(self, config, rows: int) -> int:
        """Check the anchor against a model and a batch, forget an earlier run's choices; ``<answer>``'s id."""
        if self.label_ids.shape[0] != rows:
            raise ValueError(f"anchor has {self.label_ids.shape[0]} labels for {rows} rows")
        known = {int(t) for t in config.label_token_ids}
        bad = [int(t) for t in self.label_ids.tolist() if int(t) not in known]
        if bad:
            raise ValueError(f"anchor label id {bad[0]} is not the token of one of this model's labels "
                             f"({dict(zip(config.labels, map(int, config.label_token_ids)))}); "
                             "use migr_rt.rationale.label_token_id(config, label)")
        self.model_ids = torch.full_like(self.label_ids, -1)
        return int(config.special_token_ids["answer_start"])

    def choose(self, previous: torch.Tensor, argmax: torch.Tensor, answer_start: int) -> torch.Tensor:
        """This step's ids: the argmax, except the label in rows whose previous token opened the answer.

        Returns ``argmax`` itself (the same object) when no row opened it, so a caller can tell a forced step.
        """
        if answer_start not in previous.tolist():  # most steps; cheaper than a tensor test per token
            return argmax
        opened = previous.to(argmax.device) == answer_start
        labels, model_ids = self.label_ids.to(argmax.device), self.model_ids.to(argmax.device)
        self.model_ids = torch.where(opened & (model_ids < 0), argmax, model_ids).cpu()
        return torch.where(opened, labels, argmax)


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
    anchor: AnswerAnchor | None = None,
) -> Iterator[torch.Tensor]:
    """Yield each step's ``(B,)`` ids as soon as they are chosen: the argmax (the anchored label right after
    ``<answer>``), ``pad`` for rows that stopped.

    Stops after the step where every row has emitted a stop token, or after
    ``max_new_tokens``; closing the generator early skips the remaining steps
    (that is how a stale rationale is cancelled). ``anchor`` closes each row
    with its given label (see :class:`AnswerAnchor`).
    """
    cfg = backend.config
    stops = _stops(cfg, stop_token_ids)
    answer_start = anchor.start(cfg, input_ids.shape[0]) if anchor is not None else -1
    pad = torch.full((input_ids.shape[0],), cfg.special_token_ids["pad"], dtype=torch.long)
    done = torch.zeros(input_ids.shape[0], dtype=torch.bool)
    previous = input_ids[:, -1]  # a prompt that ends with <answer> is answered with the label too
    logits, state = backend.prefill(input_ids, tokens, visible)
    for step in range(max_new_tokens):
        choice = logits.argmax(dim=-1)
        if anchor is not None:
            choice = anchor.choose(previous, choice, answer_start)
        nxt = previous = torch.where(done, pad, choice)
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
    anchor: AnswerAnchor | None = None,
) -> Decoded:
    """Continue ``input_ids`` ``(B, L)`` with the argmax token until every row stops or ``max_new_tokens``.

    ``visible`` ``(B, M)`` hides modalities for the whole rationale;
    ``on_token(step, ids)`` sees each step's ``(B,)`` ids as soon as they are
    chosen (streaming); ``cancelled()`` returning True stops early;
    ``anchor`` closes each row with its given label.
    """
    bsz = input_ids.shape[0]
    cfg = backend.config
    stops = _stops(cfg, stop_token_ids)
    steps: list[torch.Tensor] = []
    lengths = torch.zeros(bsz, dtype=torch.long)
    done = torch.zeros(bsz, dtype=torch.bool)
    decoding = iter_greedy(backend, input_ids, tokens, visible, max_new_tokens=max_new_tokens,
                           stop_token_ids=stop_token_ids, anchor=anchor)
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
