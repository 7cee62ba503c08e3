"""Greedy rationale decoding over any backend: one prefill, then one step per token.

The same loop as :func:`migr_rt.generate.generate` (which training uses for
sampling on a torch model), written against the backend interface so the
runtime decodes identically on torch, onnxruntime and TensorRT.

Two things differ from ``generate`` (which measures the model as trained):
the trace keeps its shape (:class:`~migr_rt.backends.trace_grammar.TraceGrammar`:
no segment for a hidden modality, every tag closed, one label answered),
and an :class:`AnswerAnchor` closes a rationale with a label chosen before it
(the runtime's fast label): the rationale is generated after the answer slot
has been read, and left to itself its closing ``<answer>`` can name another
emotion than the label the caller already reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from migr_rt.backends.base import Backend, ModalityTokens, as_numpy
from migr_rt.backends.trace_grammar import TraceGrammar


@dataclass
class Decoded:
    tokens: np.ndarray  #: (B, N) int64 chosen ids, ``pad`` after a row stopped
    lengths: np.ndarray  #: (B,) int64 tokens generated per row, its stop token included


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

    label_ids: np.ndarray  #: (B,) the token id of each row's label (any int array-like is taken)
    #: (B,) the id the model would have chosen after its first ``<answer>``; -1 where it wrote none
    model_ids: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.label_ids = as_numpy(self.label_ids, np.int64)
        if self.label_ids.ndim != 1:
            raise ValueError(f"AnswerAnchor label_ids must be one token id per row, got shape "
                             f"{tuple(self.label_ids.shape)}")
        self.model_ids = np.full_like(self.label_ids, -1)

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
        self.model_ids = np.full_like(self.label_ids, -1)
        return int(config.special_token_ids["answer_start"])

    def choose(self, previous: np.ndarray, argmax: np.ndarray, answer_start: int) -> np.ndarray:
        """This step's ids: the argmax, except the label in rows whose previous token opened the answer.

        Returns ``argmax`` itself (the same object) when no row opened it, so a caller can tell a forced step.
        """
        opened = np.asarray(previous) == answer_start
        if not opened.any():  # most steps
            return argmax
        self.model_ids = np.where(opened & (self.model_ids < 0), argmax, self.model_ids)
        return np.where(opened, self.label_ids, argmax)


def _stops(config, stop_token_ids: Sequence[int] | None) -> np.ndarray:
    """The ids that end a row: ``stop_token_ids``, by default the answer's end tag and eos."""
    if stop_token_ids is None:
        stop_token_ids = (config.special_token_ids["answer_end"], config.special_token_ids["eos"])
    return np.asarray(list(stop_token_ids), dtype=np.int64)


def iter_greedy(
    backend: Backend,
    input_ids,
    tokens: ModalityTokens,
    visible,
    *,
    max_new_tokens: int = 128,
    stop_token_ids: Sequence[int] | None = None,
    anchor: AnswerAnchor | None = None,
    constrain: bool = True,
) -> Iterator[np.ndarray]:
    """Yield each step's ``(B,)`` int64 ids as soon as they are chosen: the argmax (the anchored label right after
    ``<answer>``), ``pad`` for rows that stopped.

    Stops after the step where every row has emitted a stop token, or after
    ``max_new_tokens``; closing the generator early skips the remaining steps
    (that is how a stale rationale is cancelled). ``anchor`` closes each row
    with its given label (see :class:`AnswerAnchor`). ``constrain`` keeps
    each row's trace in shape (:class:`TraceGrammar`: a modality ``visible``
    hides gets no segment); False: the model's argmax as is, as ``generate``.
    """
    cfg = backend.config
    input_ids = as_numpy(input_ids, np.int64)
    stops = _stops(cfg, stop_token_ids)
    answer_start = anchor.start(cfg, input_ids.shape[0]) if anchor is not None else -1
    pad = np.full((input_ids.shape[0],), cfg.special_token_ids["pad"], dtype=np.int64)
    done = np.zeros(input_ids.shape[0], dtype=bool)
    previous = input_ids[:, -1]  # a prompt that ends with <answer> is answered with the label too
    grammar = TraceGrammar(cfg, visible, input_ids) if constrain else None
    logits, state = backend.prefill(input_ids, tokens, visible)
    for step in range(max_new_tokens):
        logits = np.asarray(logits)
        choice = logits.argmax(-1)
        if grammar is not None:
            choice = grammar.choose(logits, choice)
        if anchor is not None:
            choice = anchor.choose(previous, choice, answer_start)
        if grammar is not None:
            grammar.advance(choice)
        nxt = previous = np.where(done, pad, choice)
        yield nxt
        done |= np.isin(nxt, stops)
        if bool(done.all()) or step + 1 == max_new_tokens:
            return
        logits, state = backend.step(nxt, state)


def greedy_decode(
    backend: Backend,
    input_ids,
    tokens: ModalityTokens,
    visible,
    *,
    max_new_tokens: int = 128,
    stop_token_ids: Sequence[int] | None = None,
    on_token: Callable[[int, np.ndarray], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    anchor: AnswerAnchor | None = None,
    constrain: bool = True,
) -> Decoded:
    """Continue ``input_ids`` ``(B, L)`` (int array-like) with the argmax token until every row stops or ``max_new_tokens``.

    ``visible`` ``(B, M)`` hides modalities for the whole rationale;
    ``on_token(step, ids)`` sees each step's ``(B,)`` ids as soon as they are
    chosen (streaming); ``cancelled()`` returning True stops early;
    ``anchor`` closes each row with its given label; ``constrain`` keeps
    each row's trace in shape (see :func:`iter_greedy`).
    """
    input_ids = as_numpy(input_ids, np.int64)
    bsz = input_ids.shape[0]
    cfg = backend.config
    stops = _stops(cfg, stop_token_ids)
    steps: list[np.ndarray] = []
    lengths = np.zeros(bsz, dtype=np.int64)
    done = np.zeros(bsz, dtype=bool)
    decoding = iter_greedy(backend, input_ids, tokens, visible, max_new_tokens=max_new_tokens,
                           stop_token_ids=stop_token_ids, anchor=anchor, constrain=constrain)
    for step, nxt in enumerate(decoding):
        steps.append(nxt)
        lengths += ~done
        done |= np.isin(nxt, stops)
        if on_token is not None:
            on_token(step, nxt)
        if cancelled is not None and cancelled():
            decoding.close()
            break
    out = np.stack(steps, axis=1) if steps else np.zeros((bsz, 0), dtype=np.int64)
    return Decoded(out, lengths)
