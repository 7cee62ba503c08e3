"""Decoding steps over the fused step graph's in-place KV cache (onnxruntime, CPU).

The fused step (:mod:`migr_rt.export.fused_step`) reads and writes one
fixed buffer per layer instead of taking the cache in and handing a longer
copy back. Here those buffers are numpy arrays, bound once, with the token,
the position, the key mask and the logits, through an ``IOBinding``: a step
writes the token and position into their buffers, sets one column of the
mask and runs. Nothing is allocated, copied or bound per token, which is
what a 0.2 ms step can afford.

States handed out are views of the buffers' first rows, as the CUDA-graph
decoder's (:class:`~migr_rt.backends.graph_decode.StaticDecoder`). A step
from one of them (the very arrays handed out, kept by length) continues in
place, writing the row after it: so it invalidates any longer state handed
out before, and a rationale (each step fed the state the last one returned)
never copies its cache. Any other state (a prefill's, another backend's,
a slice of one handed out) is copied into new buffers of
:data:`MIN_CAPACITY` positions, doubled (up to the model's positions) when a
rationale outgrows them.
"""

from __future__ import annotations

import threading

import numpy as np

from migr_rt.backends.base import DecoderState, as_numpy

#: Cache positions allocated at first (a rationale prompt plus a rationale fit); doubled when outgrown.
MIN_CAPACITY = 256


def check_room(length: int, max_positions: int) -> None:
    """Refuse a cache of ``length`` tokens that has no position left for another (the rotary table ends there)."""
    if length + 1 > max_positions:
        raise ValueError(f"the decoder cache holds {length} tokens: this model's positions end at "
                         f"max_position_embeddings={max_positions}; shorten the rationale (max_rationale_tokens)")


def is_static_step(input_names: list[str]) -> bool:
    """Whether a step graph with these inputs keeps its cache in place (the fused step since this module)."""
    return "past_key_0" in input_names


class StaticCacheStep:
    """Greedy-decoding steps with :class:`DecoderState` in and out over one onnxruntime session of the fused step.

    ``max_positions`` is the model's ``max_position_embeddings`` (the rotary table's length): a state that long
    cannot take another token.
    """

    def __init__(self, session, layers: int, max_positions: int) -> None:
        import onnxruntime

        self._ort = onnxruntime
        self.session = session
        self.layers = layers
        self.max_positions = max_positions
        names = [i.name for i in session.get_inputs()]
        self._past = [n for n in names if n.startswith("past_")]
        if len(self._past) != 2 * layers:
            raise ValueError(f"the step graph has {len(self._past)} cache inputs, the model has {layers} layers")
        past_key = next(i for i in session.get_inputs() if i.name == "past_key_0")
        #: (kv_heads, head_dim) of the cache, where the graph names them
        self._heads = tuple(d if isinstance(d, int) else None for d in (past_key.shape[1], past_key.shape[3]))
        self._binding = None
        self._handed: dict[int, tuple] = {}  # length -> the (keys, values, key_visible) views handed out
        self._keep: list = []  # the OrtValues bound (they share the numpy buffers' memory)
        self.keys = self.values = self.key_visible = None  #: (layers, B, kv, capacity, D) / (B, capacity)
        # One step at a time: two threads decoding at once (a Predictor shared by a server's workers) each get
        # their own rationale, at the price of copying their state back in when they alternate (new buffers each
        # time, so a view handed to one thread is never overwritten by the other's load).
        self._lock = threading.Lock()

    @property
    def capacity(self) -> int:
        return 0 if self.keys is None else int(self.keys.shape[3])

    def step(self, token, state: DecoderState) -> tuple[np.ndarray, DecoderState]:
        """``token`` ``(B,)`` or ``(B, 1)`` after ``state`` -> logits ``(B, V)`` and the state one token longer."""
        token = as_numpy(token, np.int64).reshape(-1, 1)
        with self._lock:
            return self._step(token, state)

    def _step(self, token: np.ndarray, state: DecoderState) -> tuple[np.ndarray, DecoderState]:
        n = state.length
        check_room(n, self.max_positions)
        ours = self._holds(state, token.shape[0])
        if not ours or n + 1 > self.capacity:  # another state, or this one outgrew the buffers: fresh ones
            self._load(state, token.shape[0], n, max(MIN_CAPACITY, n + 1, 2 * self.capacity if ours else 0))
        self._token[...] = token
        self._position[0] = n
        self.key_visible[:, n] = True
        self.session.run_with_iobinding(self._binding)
        n += 1
        views = self._handed[n] = (self.keys[:, :, :, :n], self.values[:, :, :, :n], self.key_visible[:, :n])
        return self._logits.copy(), DecoderState(*views)

    def run_graph(self) -> None:
        """Run the step graph once on the bound buffers as they are: a step without the Python around it (for
        benchmarks; it writes the row after the last state handed out, as a step from that state would)."""
        self.session.run_with_iobinding(self._binding)

    def graph_feeds(self) -> dict[str, np.ndarray]:
        """Copies of the bound inputs, by name, for a plain ``session.run`` of the graph (a benchmark's capture)."""
        feeds = {"token": self._token.copy(), "position": self._position.copy(), "key_visible": self.key_visible.copy()}
        for name in self._past:
            kind, layer = name.split("_")[1], int(name.rsplit("_", 1)[1])
            feeds[name] = (self.keys if kind == "key" else self.values)[layer].copy()
        return feeds

    # -- internals ------------------------------------------------------------------------------------------------
    def _holds(self, state: DecoderState, batch: int) -> bool:
        """Whether ``state`` is one this decoder handed out from its current buffers (a view of their first rows).

        Told by identity with the views handed out, not by their ``base``: a slice of one (the batch reversed,
        the oldest key dropped) has the buffers as its base too, but other rows. Reading their addresses
        (``ctypes``) would cost ~5 us and, worse, the Python objects it makes evict cached weights, ~25 us off
        the step that follows.
        """
        if self.keys is None or self.keys.shape[1] != batch:
            return False
        views = self._handed.get(state.length)
        return (views is not None and state.keys is views[0] and state.values is views[1]
                and state.key_visible is views[2])

    def _load(self, state: DecoderState, batch: int, n: int, capacity: int) -> None:
        """New buffers of ``capacity`` positions holding ``state`` (which may be a view of the old ones)."""
        keys, values = as_numpy(state.keys, np.float32), as_numpy(state.values, np.float32)
        visible = as_numpy(state.key_visible, bool)
        heads = self._heads
        if keys.ndim != 5 or keys.shape[0] != self.layers or keys.shape[1] != batch or keys.shape[3] != n \
                or values.shape != keys.shape or visible.shape != (batch, n) \
                or any(want is not None and got != want for got, want in zip(keys.shape[2::2], heads)):
            raise ValueError(f"decoder state keys {keys.shape} / values {values.shape} / key mask {visible.shape} do "
                             f"not fit {batch} token(s), {self.layers} layers of {heads[0]} KV heads of {heads[1]} "
                             f"and a key mask of {n} keys")
        self._allocate(keys.shape, batch, capacity)
        self.keys[:, :, :, :n] = keys
        self.values[:, :, :, :n] = values
        self.key_visible[:, :n] = visible

    def _allocate(self, shape: tuple[int, ...], batch: int, capacity: int) -> None:
        capacity = min(capacity, self.max_positions)
        layers, _, kv, _, head_dim = shape
        self.keys = np.zeros((layers, batch, kv, capacity, head_dim), np.float32)
        self.values = np.zeros_like(self.keys)
        self.key_visible = np.zeros((batch, capacity), bool)
        self._handed = {}
        self._token = np.zeros((batch, 1), np.int64)
        self._position = np.zeros(1, np.int64)
        vocab = next(o.shape[-1] for o in self.session.get_outputs() if o.name == "logits")
        self._logits = np.zeros((batch, vocab), np.float32)
        binding = self.session.io_binding()
        self._keep = []

        def value(array: np.ndarray):
            self._keep.append(self._ort.OrtValue.ortvalue_from_numpy(array))  # shares the array's memory
            return self._keep[-1]

        for name, array in (("token", self._token), ("position", self._position), ("key_visible", self.key_visible)):
            binding.bind_ortvalue_input(name, value(array))
        binding.bind_ortvalue_output("logits", value(self._logits))
        for name in self._past:  # past_key_3 -> keys[3]; the node writes the new row into its own input
            kind, layer = name.split("_")[1], int(name.rsplit("_", 1)[1])
            cache = value((self.keys if kind == "key" else self.values)[layer])
            binding.bind_ortvalue_input(name, cache)
            binding.bind_ortvalue_output(name.replace("past_", "present_", 1), cache)
        self._binding = binding
