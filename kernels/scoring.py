"""MI scoring on the kernels: what :class:`~migr_rt.model.graphs.ScoringGraph` computes, without variant copies.

:func:`fused_scoring` returns exactly ``ScoringGraph.forward``'s outputs
(``log_probs``, ``mi``, ``importance``, ``dominant``) from the same weights:

* the embeddings of the B windows are built once (no ``repeat_interleave``);
* layer 0 projects q/k/v for the B windows' L rows only -- identical in
  every variant -- and the masked-attention kernel
  (:func:`~migr_rt.kernels.masked_attention.masked_attention_rows`) computes
  every variant's attention from them, masking each variant's hidden span in
  registers and skipping its key blocks;
* from there on the activations are R rows per window, not ``(1+M) L``:
  variant 0's L rows, then for each masked variant only the rows *after* its
  masked span (:func:`~migr_rt.kernels.masked_attention.suffix_rows`). That
  is exact: before span m a position's state in variant 1+m equals variant
  0's at every layer (the same keys are visible to it), and inside span m it
  is never visible, so only the suffix differs. The kernel reads a variant's
  prefix keys/values from variant 0's rows. For the layout ``[bos] <vis>
  v.. </vis> <aud> a.. </aud> prompt <answer>`` (L = Nv + Na + P + 6) the
  audio-masked variant keeps ``</aud> prompt <answer>`` only: R = L + (Na +
  P + 4) + (P + 2), e.g. 53 rows for the bundled L = 25 (75 materialised),
  1057 for 512 visual + 256 audio tokens, L = 781 (2343 materialised);
* the last layer computes keys/values for all R rows but queries, attention
  output and MLP for the 1+M answer slots only (the only rows read), which
  the reference computes for all positions of all variants;
* the label projection is one small matmul, then
  :func:`~migr_rt.kernels.fused_mi.fused_mi` does log-softmax, MI,
  importance and dominant in one launch.

:class:`KernelScoring` wraps it as a module with the graph's signature and,
on CUDA, captures the fixed-shape step in a ``torch.cuda.CUDAGraph`` per
input shape (the step has ~15 launches per layer; replaying them as one
graph removes the CPU launch overhead that dominates a small decoder at B=1).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from migr_rt.backends.graph_decode import cuda_graphs_default
from migr_rt.kernels.fused_mi import fused_mi
from migr_rt.kernels.masked_attention import LAYOUT_FIELDS, masked_attention_rows, suffix_layout, suffix_rows
from migr_rt.model.graphs import ScoringGraph

_PLANS: weakref.WeakKeyDictionary[ScoringGraph, dict[tuple, _Plan]] = weakref.WeakKeyDictionary()


@dataclass
class _Plan:
    """Everything about the fixed scoring layout the kernels need, built once per (graph, device, batch).

    Row scheme (:func:`~migr_rt.kernels.masked_attention.suffix_rows`): after
    layer 0 the activations are ``(B, R, H)`` with variant 0's ``L`` rows
    followed by each masked variant's rows *after* its masked span.
    """

    spans: torch.Tensor  #: (B, M, 2) int32
    seq_lens: torch.Tensor  #: (B,) int32, all L
    rows: int  #: R
    row_pos: torch.Tensor  #: (R,) position of each row
    answer_rows: torch.Tensor  #: (1+M,) row of each variant's answer slot
    layout_first: torch.Tensor  #: layer 0: queries/keys from the shared L rows, outputs to the R rows
    layout_rows: torch.Tensor  #: deeper layers: everything in the R rows
    layout_last_shared: torch.Tensor  #: last layer = layer 0 (one-layer decoder): answer query only
    layout_last_rows: torch.Tensor  #: last layer: answer queries (variant dim), keys in the R rows


def modality_spans(graph: ScoringGraph) -> list[list[int]]:
    """``[[start, end), ...]`` of each modality's placeholder tokens in the scoring layout (config order:
    visual, audio, as in ``KVDecoder.key_visibility``); ``[0, 0]`` for a modality with no tokens."""
    ids = graph.ids.tolist()
    spans = []
    for token in (graph.decoder.vis_token, graph.decoder.aud_token):
        where = [i for i, t in enumerate(ids) if t == token]
        if where and where != list(range(where[0], where[-1] + 1)):
            raise ValueError(f"token {token}'s placeholders are not contiguous in the scoring layout: {where}")
        spans.append([where[0], where[-1] + 1] if where else [0, 0])
    if len(spans) != graph.variants - 1:
        raise ValueError(f"scoring graph has {graph.variants - 1} modalities, the kernels path knows 2")
    if spans and max(end for _, end in spans) >= len(ids):
        raise ValueError("the answer slot must come after every modality span")
    return spans


def scoring_plan(graph: ScoringGraph, bsz: int) -> _Plan:
    """The cached :class:`_Plan` (host reads happen here, before any CUDA-graph capture)."""
    device = graph.ids.device
    per_graph = _PLANS.setdefault(graph, {})
    key = (device, bsz)
    if key not in per_graph:
        seq = int(graph.ids.shape[0])
        spans = modality_spans(graph)
        starts, offsets = suffix_rows(seq, spans)
        rows = offsets[-1] + seq - starts[-1]
        row_pos = torch.cat([torch.arange(start, seq) for start in starts])
        answer = [offset + seq - 1 - start for start, offset in zip(starts, offsets)]
        variants = len(starts)
        last = torch.zeros(bsz, variants, len(LAYOUT_FIELDS), dtype=torch.int32)
        last[..., 0], last[..., 1] = seq - 1, 1  # one query row per variant, at the answer position
        last_rows = last.clone()
        last_rows[..., 4:] = suffix_layout(bsz, seq, spans, torch.device("cpu"))[..., 4:]  # keys in the R rows
        last[..., 4] = seq  # shared keys: all from the base rows
        span_rows = torch.tensor(spans, dtype=torch.int32, device=device).reshape(1, -1, 2)
        per_graph[key] = _Plan(
            spans=span_rows.expand(bsz, -1, -1).contiguous(),
            seq_lens=torch.full((bsz,), seq, dtype=torch.int32, device=device),
            rows=rows,
            row_pos=row_pos.to(device),
            answer_rows=torch.tensor(answer, device=device),
            layout_first=suffix_layout(bsz, seq, spans, device, shared_queries=True),
            layout_rows=suffix_layout(bsz, seq, spans, device),
            layout_last_shared=last.to(device),
            layout_last_rows=last_rows.to(device),
        )
    return per_graph[key]


def fused_scoring(
    graph: ScoringGraph, visual_tokens: torch.Tensor, audio_tokens: torch.Tensor, present: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``ScoringGraph.forward`` on the kernels: ``(log_probs (B,1+M,C), mi (B,M), importance (B,M), dominant (B,))``."""
    dec = graph.decoder
    bsz = visual_tokens.shape[0]
    variants = graph.variants
    ids = graph.ids[None].expand(bsz, -1)
    seq = ids.shape[1]
    plan = scoring_plan(graph, bsz)
    present = present.to(ids.device).bool()
    present_i8 = present.to(torch.int8)
    embeds = graph.embedder(ids, visual_tokens, audio_tokens)  # (B, L, H): once per window
    heads, kv_heads, dim = dec.heads, dec.kv_heads, dec.head_dim
    cos, sin = dec._rope(torch.arange(seq, device=ids.device)[None], embeds.dtype)  # (1, 1, L, D)
    cos, sin = cos.reshape(seq, dim), sin.reshape(seq, dim)
    rope_rows = (cos[plan.row_pos][None, :, None], sin[plan.row_pos][None, :, None])  # (1, R, 1, D)
    rope_seq = (cos[None, :, None], sin[None, :, None])  # (1, L, 1, D)
    mask_args = (plan.seq_lens, plan.spans, present_i8)

    def rotate(t: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return dec._rotate(t, *rope)

    def storage(t: torch.Tensor) -> torch.Tensor:  # (B, rows, heads, D) -> (B, 1, heads, rows, D), no copy
        return t.transpose(1, 2)[:, None]

    x = embeds  # layer 0 input: the L shared rows (identical in every variant)
    shared = True
    last = len(dec.layers) - 1
    for i, layer in enumerate(dec.layers):
        attn = layer.self_attn
        rows = x.shape[1]
        rope = rope_seq if shared else rope_rows
        h = dec._rms(x, layer.input_layernorm.weight)
        k = rotate(attn.k_proj(h).view(bsz, rows, kv_heads, dim), rope)
        v = attn.v_proj(h).view(bsz, rows, kv_heads, dim)
        if i == last:  # the answer slot is the only row read: one query per variant
            x = x[:, seq - 1:seq] if shared else x[:, plan.answer_rows]  # (B, 1 | 1+M, H)
            hq = h[:, seq - 1:seq] if shared else h[:, plan.answer_rows]
            q = rotate(attn.q_proj(hq).view(bsz, hq.shape[1], heads, dim), (cos[seq - 1], sin[seq - 1]))
            out = torch.empty(bsz, variants, heads, dim, dtype=x.dtype, device=x.device)
            masked_attention_rows(q[:, :, :, None], storage(k), storage(v), out[:, :, :, None], *mask_args,
                                  plan.layout_last_shared if shared else plan.layout_last_rows, q_rows=1, key_len=seq)
        else:
            q = rotate(attn.q_proj(h).view(bsz, rows, heads, dim), rope)
            out = torch.empty(bsz, plan.rows, heads, dim, dtype=x.dtype, device=x.device)
            masked_attention_rows(storage(q), storage(k), storage(v), storage(out), *mask_args,
                                  plan.layout_first if shared else plan.layout_rows, q_rows=seq, key_len=seq)
            if shared:
                x = x[:, plan.row_pos]  # the residual stream splits into the R rows here
            shared = False
        x = x + attn.o_proj(out.flatten(-2))
        h = dec._rms(x, layer.post_attention_layernorm.weight)
        mlp = layer.mlp
        x = x + mlp.down_proj(nn.functional.silu(mlp.gate_proj(h)) * mlp.up_proj(h))
    hidden = dec._rms(x, dec.norm.weight)  # (B, 1+M, H) at the answer slot
    logits = hidden @ dec.lm_head.weight[graph.label_ids].T  # (B, 1+M, C)
    log_probs, _, mi, importance, dominant = fused_mi(logits, present)
    return log_probs, mi, importance, dominant


class KernelScoring(nn.Module):
    """:func:`fused_scoring` as a module with ``ScoringGraph``'s signature; CUDA-graph replay on CUDA.

    One graph is captured per input shape/dtype (the runtime scores a fixed
    batch, so in practice one), at most ``max_graphs`` kept (oldest dropped).
    Outputs are cloned out of the graph's static buffers before returning, so
    the next replay cannot overwrite what a caller holds; a lock keeps two
    threads (a Predictor shared by a server's workers) from filling the same
    input buffers at once.
    """

    def __init__(self, graph: ScoringGraph, *, cuda_graphs: bool | None = None, max_graphs: int = 4) -> None:
        super().__init__()
        param = next(graph.parameters(), None)
        self.graph = graph.to(param.device) if param is not None else graph  # its id/RoPE buffers start on the CPU
        self.cuda_graphs = cuda_graphs_default() if cuda_graphs is None else cuda_graphs
        self.max_graphs = max_graphs
        self._captured: OrderedDict[tuple, tuple[torch.cuda.CUDAGraph, tuple, tuple]] = OrderedDict()
        self._lock = threading.Lock()

    def forward(
        self, visual_tokens: torch.Tensor, audio_tokens: torch.Tensor, present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        present = present.to(visual_tokens.device).bool()
        if self.cuda_graphs and visual_tokens.is_cuda:
            return self._replay(visual_tokens, audio_tokens, present)
        return fused_scoring(self.graph, visual_tokens, audio_tokens, present)

    def _replay(self, visual_tokens: torch.Tensor, audio_tokens: torch.Tensor, present: torch.Tensor):
        with self._lock:
            return self._replay_locked((visual_tokens, audio_tokens, present))

    def _replay_locked(self, inputs: tuple[torch.Tensor, ...]):
        key = tuple((tuple(t.shape), t.dtype, t.device) for t in inputs)
        entry = self._captured.get(key)
        if entry is None:
            entry = self._capture(inputs)
            self._captured[key] = entry
            while len(self._captured) > self.max_graphs:
                self._captured.popitem(last=False)
        else:
            self._captured.move_to_end(key)
        cuda_graph, static_in, static_out = entry
        for dst, src in zip(static_in, inputs):
            dst.copy_(src)
        cuda_graph.replay()
        return tuple(o.clone() for o in static_out)

    def _capture(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.cuda.CUDAGraph, tuple, tuple]:
        static_in = tuple(t.clone() for t in inputs)
        device = static_in[0].device
        scoring_plan(self.graph, static_in[0].shape[0])  # host reads before capture
        side = torch.cuda.Stream(device=device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up: Triton compiles here, cuBLAS picks its kernels
            for _ in range(2):
                fused_scoring(self.graph, *static_in)
        torch.cuda.current_stream(device).wait_stream(side)
        cuda_graph = torch.cuda.CUDAGraph()
        # thread_local: other threads of a shared Predictor may run eager CUDA work meanwhile (see graph_decode)
        with torch.cuda.graph(cuda_graph, capture_error_mode="thread_local"):
            static_out = fused_scoring(self.graph, *static_in)
        return cuda_graph, static_in, static_out
