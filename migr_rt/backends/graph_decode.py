"""Decoding steps over a fixed-size KV cache, replayed from a CUDA graph (the torch backend on CUDA).

A step of a small decoder on a GPU is a few hundred tiny kernel launches:
the launches, not the arithmetic, set its time. The functional step of
:class:`~migr_rt.model.graphs.StepGraph` returns a cache one token longer,
so its shapes change every token and it cannot be captured. Here the cache
is a buffer of ``max_length`` slots per row; a step writes the new key and
value into the next slot in place (:meth:`KVDecoder.run` with ``slot``) and
attends over the whole buffer with the unused slots invisible, so every
step has the same shapes and is captured once per batch size and replayed.

States handed out are views of the buffers: the one a step returned is
continued without a copy; any other state (a new prefill, an older state)
is first copied in. Before that copy overwrites the buffers, every state
stepped out of them since they were last loaded (the latest and any older
one of the same rationale, if anyone still holds it: weak references) is
moved into memory of its own, so two rationales decoded in turns (a
Predictor shared by a server's threads; steps are serialised by a lock)
each continue their own cache, at the price of a copy each time they
alternate, and an older state kept by a caller still continues its own
cache after another state was loaded. The protection follows the
:class:`DecoderState` objects handed out: their tensors taken out and kept
on their own (or put in a new DecoderState) are views of the buffers that
the next load overwrites.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from migr_rt.backends.base import DecoderState
from migr_rt.model.graphs import KVDecoder


def cuda_graphs_default() -> bool:
    """CUDA-graph capture (MI scoring, decoding steps) is on unless ``MIGR_RT_CUDA_GRAPHS=0``."""
    return os.environ.get("MIGR_RT_CUDA_GRAPHS", "1") != "0"


@dataclass
class _Slots:
    """The fixed-size buffers of one batch size, and its captured step (None: run eagerly)."""

    keys: torch.Tensor  #: (layers, B, kv, max_length, D)
    values: torch.Tensor
    key_visible: torch.Tensor  #: (B, max_length) bool
    position: torch.Tensor  #: (1,) long: the slot the next token goes to
    token: torch.Tensor  #: (B, 1) long
    logits: torch.Tensor | None = None  #: (B, V) float, written by the captured step
    graph: torch.cuda.CUDAGraph | None = None
    #: weak references to the states stepped out of these buffers since they were last loaded, oldest first
    handed: list[weakref.ref] = field(default_factory=list)


class StaticDecoder:
    """Greedy-decoding steps with :class:`~migr_rt.backends.base.DecoderState` in and out, over static buffers.

    ``cuda_graphs`` captures the step on first use per batch size (CUDA
    only); without it the same static step runs eagerly (what the CPU tests
    compare against the functional step).
    """

    def __init__(self, decoder: KVDecoder, max_length: int, *, cuda_graphs: bool, max_batches: int = 4) -> None:
        if max_length < 2:
            raise ValueError(f"max_length must be at least 2 cache slots, got {max_length}")
        self.decoder = decoder
        self.max_length = max_length
        self.cuda_graphs = cuda_graphs
        self.max_batches = max_batches
        self._slots: OrderedDict[int, _Slots] = OrderedDict()
        self._lock = threading.Lock()

    def step(self, token: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        """``token`` ``(B,)`` or ``(B, 1)`` after ``state`` -> logits ``(B, V)`` and the state one token longer."""
        token = token.reshape(-1, 1)
        with self._lock:
            return self._step(token, state)

    # -- internals ------------------------------------------------------------------------------------------------
    def _step(self, token: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        length = state.length
        if length + 1 > self.max_length:
            raise ValueError(f"the decoder cache holds {length} tokens: the static cache has {self.max_length} slots "
                             "(the model's max_position_embeddings); shorten the rationale (max_rationale_tokens)")
        slots = self._load(state)
        slots.token.copy_(token.to(slots.token.device))
        if slots.graph is not None:
            slots.graph.replay()
            logits = slots.logits.clone()
        else:
            logits = self._run(slots)
            if self.cuda_graphs and slots.keys.is_cuda:
                slots.logits = logits
                self._capture(slots, length)
        n = length + 1
        handed = DecoderState(slots.keys[:, :, :, :n], slots.values[:, :, :, :n], slots.key_visible[:, :n])
        # dropped states (a rationale rebinds its state every token) leave the list as they go: it stays short
        slots.handed = [ref for ref in slots.handed if ref() is not None] + [weakref.ref(handed)]
        return logits, handed

    def _run(self, slots: _Slots) -> torch.Tensor:
        """One static step: the token into slot ``position``, attention over the visible slots, position + 1."""
        d = self.decoder
        bsz = slots.token.shape[0]
        slots.key_visible.index_fill_(1, slots.position, True)
        positions = slots.position.reshape(1, 1).expand(bsz, 1)
        with torch.inference_mode():
            hidden, _, _ = d.run(d.embed(slots.token), positions, slots.key_visible, slots.keys, slots.values,
                                 slot=slots.position)
            logits = d.lm_head(hidden[:, -1]).float()
        slots.position.add_(1)
        return logits

    def _capture(self, slots: _Slots, length: int) -> None:
        """Capture the step (after the eager one just run, which warmed cuBLAS); leaves the buffers as they were."""
        device = slots.keys.device
        saved = (slots.keys.clone(), slots.values.clone(), slots.key_visible.clone(), slots.position.clone())
        side = torch.cuda.Stream(device=device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            self._run(slots)  # one more warm-up on a side stream, as capture requires
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: another thread of a shared Predictor may run eager CUDA work (encoders, prefill) meanwhile;
        # in the default global mode its allocations would abort this capture
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            slots.logits = self._run(slots)
        slots.graph = graph
        for dst, src in zip((slots.keys, slots.values, slots.key_visible, slots.position), saved):
            dst.copy_(src)  # capture does not execute, but the warm-up above did: undo it

    def _load(self, state: DecoderState) -> _Slots:
        """The buffers of this batch size, holding ``state`` (copied in unless it is the last step's own)."""
        keys = torch.as_tensor(state.keys)
        bsz = keys.shape[1]
        slots = self._slots.get(bsz)
        if slots is None:
            slots = self._allocate(keys, bsz)
        self._slots.move_to_end(bsz)
        if slots.handed and slots.handed[-1]() is state:  # the last step's own: continued in place
            return slots
        ours = False  # state is one of them (an older state stepped again): a view of the buffers, kept tracked
        for ref in slots.handed:  # still held (another thread's rationale, an older state kept): own memory
            held = ref()
            if held is state:
                ours = True
            elif held is not None:
                held.keys, held.values, held.key_visible = (held.keys.clone(), held.values.clone(),
                                                            held.key_visible.clone())
        slots.handed = [weakref.ref(state)] if ours else []
        n = state.length
        device = slots.keys.device
        visible = torch.as_tensor(state.key_visible).to(device).clone()  # it may be a view of key_visible itself
        slots.keys[:, :, :, :n].copy_(keys)
        slots.values[:, :, :, :n].copy_(torch.as_tensor(state.values))
        slots.key_visible.zero_()
        slots.key_visible[:, :n].copy_(visible)
        slots.position.fill_(n)
        return slots

    def _allocate(self, keys: torch.Tensor, bsz: int) -> _Slots:
        layers, _, kv, _, head_dim = keys.shape
        device = self.decoder.embed.weight.device
        shape = (layers, bsz, kv, self.max_length, head_dim)
        slots = _Slots(
            keys=torch.zeros(shape, dtype=keys.dtype, device=device),
            values=torch.zeros(shape, dtype=keys.dtype, device=device),
            key_visible=torch.zeros(bsz, self.max_length, dtype=torch.bool, device=device),
            position=torch.zeros(1, dtype=torch.long, device=device),
            token=torch.zeros(bsz, 1, dtype=torch.long, device=device),
        )
        self._slots[bsz] = slots
        while len(self._slots) > self.max_batches:
            self._slots.popitem(last=False)
        return slots
