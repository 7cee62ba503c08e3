"""Modality-masked causal attention for the B windows x (1 + M) MI variants, without per-variant copies.

MI scoring runs every window ``b`` as ``1 + M`` variants: ``v = 0`` sees every
present modality, ``v = 1 + m`` has modality ``m``'s placeholder tokens
invisible as keys (positions unchanged; an absent modality is invisible in
every variant). The reference (:class:`migr_rt.model.graphs.ScoringGraph`)
materialises ``1 + M`` copies of the embeddings with ``repeat_interleave`` and
a ``(B(1+M), 1, L, L)`` boolean mask. This kernel instead takes the variant as
a grid coordinate: the program for ``(b, v, head, query block)`` reads window
``b``'s rows, computes the key mask from ``seq_lens``/``spans``/``present`` in
registers, and **skips** every key block that lies wholly inside a modality
span hidden in variant ``v`` (the block is neither loaded nor multiplied). A
block only partly hidden is loaded with the hidden keys masked off in the
load itself, so memory in a hidden span is never read, whatever it holds.
GQA: query head ``h`` reads key/value head ``h // (Hq / Hkv)``.

What is shared between variants, exactly. Variant ``1+m`` differs from
variant 0 only in span ``m``'s visibility, so at every layer the hidden state
of a position *before* span ``m`` is the same in both (its keys are the same);
positions *inside* span ``m`` are never visible in variant ``1+m``, so their
states there are never observed; only the *suffix* after span ``m`` genuinely
differs. In layer 0 nothing differs yet (same embeddings). The kernel takes
each operand in one of three layouts:

* shared -- a variant dimension of 1 (stride 0): layer 0's q/k/v of the B
  windows, no copy at all;
* per variant -- a variant dimension of ``1+M``: e.g. the answer-slot
  queries of the last layer;
* row-mapped ("suffix") -- one row buffer per window holding variant 0's L
  rows followed by each masked variant's suffix rows only. A per-(window,
  variant) layout row (:data:`LAYOUT_FIELDS`) says where a variant's query rows start and
  which position they sit at (``q_first``, ``q_count``, ``q_row0``,
  ``o_row0``), and from which key position on its keys/values come from its
  own suffix rows instead of variant 0's rows (``kv_split``, ``kv_shift``).
  Deeper layers of :func:`migr_rt.kernels.scoring.fused_scoring` run on this
  layout: the prefix before a masked span is computed once, for variant 0,
  and read by every variant, in every layer.

Numerics: online softmax (flash-attention style) in fp32, base-2 exponent,
``tl.dot`` accumulating in fp32; fp32 operands use IEEE (not TF32) dots.
A query row that sees no key at all (cannot happen in the scoring layout,
whose ``[bos]`` is always visible) and a query row at or past its window's
``seq_len`` produce zeros; :func:`masked_attention_reference` defines the same.
"""

from __future__ import annotations

import math

import torch

from migr_rt.kernels._triton import (
    HAS_TRITON, INTERPRET, check_device, jit, next_pow2, reduce_max, reduce_sum, tl, triton,
)


# ---------------------------------------------------------------------------------------------------------------
# masks (shared by the reference and the tests)
# ---------------------------------------------------------------------------------------------------------------
def hidden_modalities(present: torch.Tensor) -> torch.Tensor:
    """``(B, M)`` presence -> ``(B, 1+M, M)``: modality ``m`` is hidden in variant ``v`` (absent, or ``v == 1+m``).

    The complement of :func:`migr_rt.mi.variant_visibility`.
    """
    bsz, m = present.shape
    eye = torch.eye(m, dtype=torch.bool, device=present.device)
    masked = torch.cat([torch.zeros(1, m, dtype=torch.bool, device=present.device), eye], dim=0)  # (1+M, M)
    return ~present.bool()[:, None, :] | masked[None]


def variant_key_visible(
    seq_lens: torch.Tensor, spans: torch.Tensor, present: torch.Tensor, key_len: int
) -> torch.Tensor:
    """``(B, 1+M, key_len)`` bool: key ``j`` of window ``b`` is visible in variant ``v``.

    Visible = inside the window (``j < seq_lens[b]``) and in no span
    ``[spans[b, m, 0], spans[b, m, 1])`` of a modality hidden in that variant.
    """
    device = spans.device
    pos = torch.arange(key_len, device=device)
    in_span = (pos[None, None, :] >= spans[..., :1].long()) & (pos[None, None, :] < spans[..., 1:].long())  # (B, M, K)
    hidden = hidden_modalities(present.to(device))  # (B, V, M)
    hidden_key = (hidden[..., None] & in_span[:, None]).any(dim=2)  # (B, V, K)
    inside = pos[None, :] < seq_lens.to(device).long()[:, None]  # (B, K)
    return inside[:, None, :] & ~hidden_key


def _q_offsets(q_offset: int | torch.Tensor, bsz: int, device: torch.device) -> torch.Tensor:
    if isinstance(q_offset, torch.Tensor):
        return q_offset.to(device=device, dtype=torch.int32).expand(bsz).contiguous()
    return torch.full((bsz,), int(q_offset), dtype=torch.int32, device=device)


#: columns of the ``(B, 1+M, 6)`` int32 layout tensor the kernel reads per (window, variant)
LAYOUT_FIELDS: tuple[str, ...] = ("q_first", "q_count", "q_row0", "o_row0", "kv_split", "kv_shift")


def dense_layout(
    bsz: int, variants: int, q_len: int, q_offset: int | torch.Tensor, device: torch.device
) -> torch.Tensor:
    """The layout of :func:`masked_attention`: every variant has ``q_len`` query rows at positions
    ``q_offset[b] + i``, stored at rows ``i`` of q/out; keys ``j`` at row ``j`` of its own k/v."""
    layout = torch.zeros(bsz, variants, len(LAYOUT_FIELDS), dtype=torch.int32, device=device)
    layout[..., 0] = _q_offsets(q_offset, bsz, device)[:, None]
    layout[..., 1] = q_len
    return layout


def suffix_rows(seq: int, spans: list[list[int]]) -> tuple[list[int], list[int]]:
    """Row layout of the suffix scheme for one fixed token layout: ``(starts, offsets)`` per variant.

    Variant 0 keeps all ``seq`` positions at rows ``[0, seq)``; variant ``1+m``
    keeps positions ``[spans[m][1], seq)`` (after its masked span) at rows
    ``offsets[1+m] + (position - starts[1+m])``. Rows total: ``offsets[-1] + seq - starts[-1]``.
    """
    starts = [0] + [int(end) for _, end in spans]
    offsets = [0]
    for v in range(1, len(starts)):
        offsets.append(offsets[-1] + seq - starts[v - 1])
    return starts, offsets


def suffix_layout(
    bsz: int, seq: int, spans: list[list[int]], device: torch.device, *, shared_queries: bool = False
) -> torch.Tensor:
    """The ``(B, 1+M, 6)`` layout for q/k/v/out all in the suffix row scheme of :func:`suffix_rows`.

    With ``shared_queries`` the queries are read from a shared ``seq``-row
    buffer (layer 0: ``q_row0`` = the suffix's first position) while the
    output still goes to the suffix rows, and keys come from the shared rows.
    """
    starts, offsets = suffix_rows(seq, spans)
    rows = []
    for v, (start, offset) in enumerate(zip(starts, offsets)):
        q_row0 = start if shared_queries else offset
        kv_split = seq if (v == 0 or shared_queries) else start  # variant 0 / shared: every key from the base rows
        rows.append([start, seq - start, q_row0, offset, kv_split, offset - start])
    return torch.tensor(rows, dtype=torch.int32, device=device)[None].expand(bsz, -1, -1).contiguous()


def _check_shapes(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seq_lens: torch.Tensor, spans: torch.Tensor,
    present: torch.Tensor,
) -> tuple[int, int, int, int, int, int, int]:
    if q.dim() != 5 or k.dim() != 5 or v.dim() != 5:
        raise ValueError("q, k, v must be 5-D: (B, 1 or 1+M, heads, length, head_dim)")
    bsz, vq, heads, q_len, dim = q.shape
    _, vk, kv_heads, key_len, _ = k.shape
    m = spans.shape[1]
    variants = 1 + m
    if spans.shape != (bsz, m, 2) or present.shape != (bsz, m) or seq_lens.shape != (bsz,):
        raise ValueError(f"spans (B, M, 2), present (B, M), seq_lens (B,) expected; got {tuple(spans.shape)}, "
                         f"{tuple(present.shape)}, {tuple(seq_lens.shape)} for B={bsz}")
    if vq not in (1, variants) or vk not in (1, variants) or v.shape[1] != vk:
        raise ValueError(f"variant dimension of q ({vq}) and k/v ({vk}, {v.shape[1]}) must be 1 or 1+M = {variants}")
    if k.shape[0] != bsz or v.shape[:4] != k.shape[:4] or k.shape[4] != dim or v.shape[4] != dim:
        raise ValueError(f"k {tuple(k.shape)} / v {tuple(v.shape)} do not match q {tuple(q.shape)}")
    if heads % kv_heads:
        raise ValueError(f"query heads ({heads}) must be a multiple of key/value heads ({kv_heads})")
    return bsz, variants, heads, kv_heads, q_len, key_len, dim


# ---------------------------------------------------------------------------------------------------------------
# torch reference
# ---------------------------------------------------------------------------------------------------------------
def masked_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    seq_lens: torch.Tensor,
    spans: torch.Tensor,
    present: torch.Tensor,
    *,
    q_offset: int | torch.Tensor = 0,
    sm_scale: float | None = None,
    block_m: int | None = None,
    block_n: int | None = None,
) -> torch.Tensor:
    """The kernel's contract in plain torch: materialised variants, a boolean mask, fp32 matmul + softmax.

    ``q`` ``(B, 1|1+M, Hq, Lq, D)``; ``k``, ``v`` ``(B, 1|1+M, Hkv, Lk, D)``
    (a variant dimension of 1 = shared by every variant); ``seq_lens``
    ``(B,)``; ``spans`` ``(B, M, 2)`` ``[start, end)`` token indices of each
    modality's placeholder tokens (``start == end`` for none); ``present``
    ``(B, M)``. Query row ``i`` of window ``b`` sits at position
    ``q_offset (+[b]) + i`` and sees keys ``j <= position`` that
    :func:`variant_key_visible` allows. Returns ``(B, 1+M, Hq, Lq, D)`` in
    ``q.dtype``; rows with no visible key or past ``seq_len`` are zeros.
    ``block_m``/``block_n`` are accepted for signature parity and ignored.
    """
    bsz, variants, heads, kv_heads, q_len, key_len, dim = _check_shapes(q, k, v, seq_lens, spans, present)
    q_pos = _q_offsets(q_offset, bsz, q.device).long()[:, None, None] + torch.arange(q_len, device=q.device)
    visible = variant_key_visible(seq_lens, spans, present, key_len)  # (B, V, K)
    out = _attend(q.expand(bsz, variants, -1, -1, -1), k.expand(bsz, variants, -1, -1, -1),
                  v.expand(bsz, variants, -1, -1, -1), q_pos.expand(bsz, variants, q_len), visible, seq_lens, sm_scale)
    return out.to(q.dtype)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_pos: torch.Tensor, visible: torch.Tensor,
            seq_lens: torch.Tensor, sm_scale: float | None) -> torch.Tensor:
    """Dense per-variant attention in fp32.

    q ``(B, V, Hq, Q, D)``, k/v ``(B, V, Hkv, K, D)``, q_pos ``(B, V, Q)``,
    visible ``(B, V, K)``; rows with no visible key or at/after ``seq_lens[b]`` -> zeros.
    """
    heads, dim, key_len = q.shape[2], q.shape[4], k.shape[3]
    scale = dim ** -0.5 if sm_scale is None else sm_scale
    group = heads // k.shape[2]
    kf = k.float().repeat_interleave(group, dim=2)
    vf = v.float().repeat_interleave(group, dim=2)
    causal = q_pos[..., None] >= torch.arange(key_len, device=q.device)  # (B, V, Q, K)
    allowed = visible[:, :, None, None, :] & causal[:, :, None]  # (B, V, 1, Q, K)
    scores = (q.float() @ kf.transpose(-1, -2)) * scale
    scores = scores.masked_fill(~allowed, float("-inf"))
    probs = torch.nan_to_num(scores.softmax(dim=-1), nan=0.0)  # a row with no visible key -> zeros
    out = probs @ vf
    row_ok = (q_pos < seq_lens.to(q.device).long()[:, None, None])[:, :, None, :, None]
    return out.masked_fill(~row_ok, 0.0)


def masked_attention_rows_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, seq_lens: torch.Tensor,
    spans: torch.Tensor, present: torch.Tensor, layout: torch.Tensor, *, key_len: int,
    sm_scale: float | None = None,
) -> torch.Tensor:
    """:func:`masked_attention_rows` in torch: unpack each (window, variant) from the row layout, attend
    densely, write its rows into a copy of ``out`` (rows the layout does not name keep their values)."""
    bsz, variants = layout.shape[:2]
    visible = variant_key_visible(seq_lens, spans, present, key_len)  # (B, V, K)
    pos = torch.arange(key_len, device=q.device)
    result = out.clone()
    for b in range(bsz):
        for var in range(variants):
            q_first, q_count, q_row0, o_row0, kv_split, kv_shift = layout[b, var].tolist()
            own = pos >= kv_split
            kv_rows = pos + own * kv_shift  # key position -> storage row
            kv_var = torch.where(own, var, 0)  # ... and storage variant (0 = the base rows)
            kd = k[b, kv_var if k.shape[1] > 1 else 0 * kv_var, :, kv_rows].transpose(0, 1)  # (Hkv, K, D)
            vd = v[b, kv_var if v.shape[1] > 1 else 0 * kv_var, :, kv_rows].transpose(0, 1)
            qd = q[b, var if q.shape[1] > 1 else 0, :, q_row0:q_row0 + q_count]  # (Hq, Q, D)
            q_pos = q_first + torch.arange(q_count, device=q.device)
            one = _attend(qd[None, None], kd[None, None], vd[None, None], q_pos[None, None],
                          visible[b:b + 1, var:var + 1], seq_lens[b:b + 1], sm_scale)
            result[b, var if out.shape[1] > 1 else 0, :, o_row0:o_row0 + q_count] = one[0, 0].to(out.dtype)
    return result


# ---------------------------------------------------------------------------------------------------------------
# Triton kernel
# ---------------------------------------------------------------------------------------------------------------
@jit
def _attend_block(
    q, acc, l_i, m_i, visited, k_ptrs, v_ptrs, start_n, q_pos, seq_len, kv_split, kv_shift, own_k, own_v, sk_l, sv_l,
    d_ok, span_lo, span_hi, hidden, qk_scale,
    BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, SPANS: tl.constexpr, EVEN_D: tl.constexpr,
    UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """One key block of the online softmax; returns ``(acc, l_i, m_i, visited)``. ``CAUSAL``: the block reaches
    the diagonal or the window's end, so keys are masked by position; without it (an interior block) every query
    row sees every key. ``SPANS``: some modality may be hidden, so keys inside hidden spans are masked off in the
    load itself. A masked block (either) may hide every key from a row, and is skipped whole when it lies inside
    one hidden span; an unmasked one runs with no branch and plain loads, which the compiler pipelines."""
    keep = True
    if CAUSAL or SPANS:
        # A block wholly inside one hidden span: skip it (no load, no dot).
        covered = hidden & (span_lo <= start_n) & (start_n + BLOCK_N <= span_hi)
        keep = reduce_max(covered.to(tl.int32), 0) == 0
    if keep:
        offs_n = start_n + tl.arange(0, BLOCK_N)
        own = offs_n >= kv_split
        kv_rows = offs_n + tl.where(own, kv_shift, 0)
        k_off = tl.where(own, own_k, 0) + kv_rows * sk_l
        v_off = tl.where(own, own_v, 0) + kv_rows * sv_l
        if SPANS:
            in_hidden = hidden[None, :] & (offs_n[:, None] >= span_lo[None, :]) & (offs_n[:, None] < span_hi[None, :])
            key_ok = (offs_n < seq_len) & (reduce_max(in_hidden.to(tl.int32), 1) == 0)
        elif CAUSAL:
            key_ok = offs_n < seq_len
        if CAUSAL or SPANS:  # hidden keys and keys past the window are never read
            kt = tl.load(k_ptrs + k_off[None, :], mask=key_ok[None, :] & d_ok[:, None], other=0.0)  # (D, N)
            vb = tl.load(v_ptrs + v_off[:, None], mask=key_ok[:, None] & d_ok[None, :], other=0.0)  # (N, D)
        elif EVEN_D:  # interior, nothing hidden, head_dim a power of two: plain loads
            kt = tl.load(k_ptrs + k_off[None, :])
            vb = tl.load(v_ptrs + v_off[:, None])
        else:
            kt = tl.load(k_ptrs + k_off[None, :], mask=d_ok[:, None], other=0.0)
            vb = tl.load(v_ptrs + v_off[:, None], mask=d_ok[None, :], other=0.0)
        if UPCAST:
            kt = kt.to(tl.float32)
            vb = vb.to(tl.float32)
        s = tl.dot(q, kt, input_precision=DOT_PRECISION) * qk_scale
        if CAUSAL:
            s = tl.where(key_ok[None, :] & (offs_n[None, :] <= q_pos[:, None]), s, float("-inf"))
        elif SPANS:
            s = tl.where(key_ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, reduce_max(s, 1))
        m_safe = m_new
        if CAUSAL or SPANS:
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows that have seen no key yet
        p = tl.exp2(s - m_safe[:, None])
        alpha = tl.exp2(m_i - m_safe)
        l_i = l_i * alpha + reduce_sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(vb.dtype), vb, input_precision=DOT_PRECISION)
        m_i = m_new
        visited += 1
    return acc, l_i, m_i, visited


@jit
def _masked_attention_kernel(
    Q, K, V, O, SEQ_LENS, LAYOUT, SPANS, PRESENT, VISITED,
    sq_b, sq_v, sq_h, sq_l, sq_d,
    sk_b, sk_v, sk_h, sk_l, sk_d,
    sv_b, sv_v, sv_h, sv_l, sv_d,
    so_b, so_v, so_h, so_l, so_d,
    qk_scale, q_len, key_len, head_dim,
    HEADS: tl.constexpr, GROUP: tl.constexpr, NUM_VARIANTS: tl.constexpr, NUM_MODALITIES: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_MOD: tl.constexpr,
    UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr, COUNT_BLOCKS: tl.constexpr, EVEN_D: tl.constexpr,
):
    pid_nh = tl.program_id(0)  # ((b * NUM_VARIANTS) + variant) * HEADS + head: the large axis (2^31 - 1 limit)
    pid_m = tl.program_id(1)
    head = pid_nh % HEADS
    row = pid_nh // HEADS
    var = row % NUM_VARIANTS
    b = row // NUM_VARIANTS
    kv_head = head // GROUP

    seq_len = tl.load(SEQ_LENS + b)
    lay = LAYOUT + row * 6  # LAYOUT_FIELDS of this (window, variant)
    q_first = tl.load(lay)  # position of query row 0
    q_count = tl.load(lay + 1)  # query rows of this variant
    q_row0 = tl.load(lay + 2)  # storage row of query row 0 in Q
    o_row0 = tl.load(lay + 3)  # ... and in O
    kv_split = tl.load(lay + 4)  # keys at positions >= kv_split come from this variant's own rows,
    kv_shift = tl.load(lay + 5)  # at row position + kv_shift; below it from the base (variant 0) rows

    # Which modality spans are hidden in this variant (absent everywhere, or the one this variant masks).
    mods = tl.arange(0, BLOCK_MOD)
    mod_ok = mods < NUM_MODALITIES
    span_lo = tl.load(SPANS + (b * NUM_MODALITIES + mods) * 2, mask=mod_ok, other=0)
    span_hi = tl.load(SPANS + (b * NUM_MODALITIES + mods) * 2 + 1, mask=mod_ok, other=0)
    pres = tl.load(PRESENT + b * NUM_MODALITIES + mods, mask=mod_ok, other=1)
    hidden = mod_ok & ((pres == 0) | (mods + 1 == var))

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    q_pos = q_first + offs_m
    row_ok = (offs_m < q_count) & (q_pos < seq_len)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < head_dim

    q_ptrs = Q + b * sq_b + var * sq_v + head * sq_h + (q_row0 + offs_m)[:, None] * sq_l + offs_d[None, :] * sq_d
    q = tl.load(q_ptrs, mask=row_ok[:, None] & d_ok[None, :], other=0.0)
    if UPCAST:
        q = q.to(tl.float32)
    k_ptrs = K + b * sk_b + kv_head * sk_h + offs_d[:, None] * sk_d  # (D, 1): + key offsets per block
    v_ptrs = V + b * sv_b + kv_head * sv_h + offs_d[None, :] * sv_d  # (1, D)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.full([BLOCK_M], 0.0, dtype=tl.float32)
    acc = tl.full([BLOCK_M, BLOCK_D], 0.0, dtype=tl.float32)
    visited = tl.full([], 0, dtype=tl.int32)

    # Causal: the last query row of this block sees keys up to its own position; nothing past seq_len.
    last_row = tl.minimum(pid_m * BLOCK_M + BLOCK_M, q_count)
    hi = tl.minimum(q_first + last_row, seq_len)
    hi = tl.where(pid_m * BLOCK_M < q_count, hi, 0)  # a query block past this variant's rows does nothing
    # Interior key blocks end before this block's first query position and inside the window: every row sees every
    # key there, so they need no causal or length mask (and with no modality at all, no mask: plain loads in a loop
    # with no branch, which the compiler pipelines). From ``mid`` to ``hi``: the diagonal blocks, fully masked.
    mid = tl.minimum(tl.minimum(q_first + pid_m * BLOCK_M, seq_len), hi)
    mid = (mid // BLOCK_N) * BLOCK_N
    own_k = var * sk_v
    own_v = var * sv_v
    for start_n in range(0, mid, BLOCK_N):
        acc, l_i, m_i, visited = _attend_block(
            q, acc, l_i, m_i, visited, k_ptrs, v_ptrs, start_n, q_pos, seq_len, kv_split, kv_shift, own_k, own_v,
            sk_l, sv_l, d_ok, span_lo, span_hi, hidden, qk_scale, BLOCK_N, False, NUM_MODALITIES > 0, EVEN_D, UPCAST,
            DOT_PRECISION)
    for start_n in range(mid, hi, BLOCK_N):
        acc, l_i, m_i, visited = _attend_block(
            q, acc, l_i, m_i, visited, k_ptrs, v_ptrs, start_n, q_pos, seq_len, kv_split, kv_shift, own_k, own_v,
            sk_l, sv_l, d_ok, span_lo, span_hi, hidden, qk_scale, BLOCK_N, True, NUM_MODALITIES > 0, EVEN_D, UPCAST,
            DOT_PRECISION)

    out = tl.where((l_i > 0.0)[:, None], acc / tl.where(l_i > 0.0, l_i, 1.0)[:, None], 0.0)
    out = tl.where(row_ok[:, None], out, 0.0)
    o_ptrs = O + b * so_b + var * so_v + head * so_h + (o_row0 + offs_m)[:, None] * so_l + offs_d[None, :] * so_d
    tl.store(o_ptrs, out.to(O.dtype.element_ty), mask=(offs_m < q_count)[:, None] & d_ok[None, :])
    if COUNT_BLOCKS:
        tl.store(VISITED + pid_nh * tl.num_programs(1) + pid_m, visited)


def default_blocks(q_len: int, key_len: int) -> tuple[int, int]:
    """Block sizes when none are given and autotuning is off: 32 x 32 interpreted (its cost is per numpy op,
    so fewer, larger programs), 64 x 64 compiled (16 query rows for the one-row answer-slot layer)."""
    if INTERPRET:
        return 32, 32
    return (64 if q_len > 16 else 16), 64


def _tuning_configs() -> list:
    """Compiled only: flash-attention-style tile/warp choices, small query tiles for the answer-slot layer."""
    shapes = [(16, 64, 4, 3), (16, 128, 4, 3), (64, 64, 4, 3), (64, 128, 4, 3), (128, 64, 8, 3), (128, 128, 8, 2)]
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=st) for bm, bn, w, st in shapes]


def _prune(configs: list, named_args: dict, **kwargs) -> list:
    """Query tiles no taller than the (power-of-two rounded) query length: a 128-row tile for one row is waste."""
    rows = next_pow2(named_args["q_len"])
    kept = [c for c in configs if c.kwargs["BLOCK_M"] <= max(rows, 16)]
    return kept or configs[:1]


#: autotuned launcher (compiled kernels only; the interpreter and explicit block sizes use the plain kernel)
_masked_attention_tuned = (
    triton.autotune(configs=_tuning_configs(), key=["q_len", "key_len", "head_dim", "NUM_VARIANTS", "GROUP"],
                    prune_configs_by={"early_config_prune": _prune})(_masked_attention_kernel)
    if HAS_TRITON and not INTERPRET else None)


def _variant_stride(t: torch.Tensor, dim: int = 1) -> int:
    return 0 if t.shape[dim] == 1 else t.stride(dim)


def _launch(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, seq_lens: torch.Tensor,
    spans: torch.Tensor, present: torch.Tensor, layout: torch.Tensor, *, q_rows: int, key_len: int,
    sm_scale: float | None, block_m: int | None, block_n: int | None, count_blocks: bool,
) -> torch.Tensor | None:
    """Launch over ``(B * (1+M) * Hq, ceil(q_rows / BLOCK_M))`` programs; returns the visit counters or None."""
    check_device(q.device)
    if q.dtype not in (torch.float32, torch.float16, torch.bfloat16) or k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"q, k, v must share one of fp32/fp16/bf16; got {q.dtype}, {k.dtype}, {v.dtype}")
    if out.dtype != q.dtype:
        raise ValueError(f"out must be {q.dtype}, not {out.dtype}")
    bsz, num_m = spans.shape[0], spans.shape[1]
    variants, heads, kv_heads, dim = 1 + num_m, q.shape[2], k.shape[2], q.shape[4]
    if layout.shape != (bsz, variants, len(LAYOUT_FIELDS)):
        raise ValueError(f"layout must be (B, 1+M, {len(LAYOUT_FIELDS)}); got {tuple(layout.shape)}")
    tuned = _masked_attention_tuned is not None and block_m is None and block_n is None and not count_blocks
    bm_default, bn_default = default_blocks(q_rows, key_len)
    block_m = block_m or bm_default
    block_n = block_n or bn_default
    m_blocks = -(-q_rows // block_m)
    visited = (torch.zeros(bsz, variants, heads, m_blocks, dtype=torch.int32, device=q.device)
               if count_blocks else torch.zeros(1, dtype=torch.int32, device=q.device))
    if not (bsz and q_rows):
        return visited if count_blocks else None
    scale = dim ** -0.5 if sm_scale is None else sm_scale
    upcast = INTERPRET and q.dtype == torch.bfloat16
    args = (
        q, k, v, out,
        seq_lens.to(device=q.device, dtype=torch.int32).contiguous(),
        layout.to(device=q.device, dtype=torch.int32).contiguous(),
        spans.to(device=q.device, dtype=torch.int32).contiguous(),
        present.to(device=q.device, dtype=torch.int8).contiguous(),
        visited,
        q.stride(0), _variant_stride(q), q.stride(2), q.stride(3), q.stride(4),
        k.stride(0), _variant_stride(k), k.stride(2), k.stride(3), k.stride(4),
        v.stride(0), _variant_stride(v), v.stride(2), v.stride(3), v.stride(4),
        out.stride(0), _variant_stride(out), out.stride(2), out.stride(3), out.stride(4),
        scale * math.log2(math.e), q_rows, key_len, dim,
    )
    meta = dict(HEADS=heads, GROUP=heads // kv_heads, NUM_VARIANTS=variants, NUM_MODALITIES=num_m,
                BLOCK_D=next_pow2(dim), BLOCK_MOD=next_pow2(max(num_m, 1), 2), UPCAST=upcast,
                DOT_PRECISION="ieee" if q.dtype == torch.float32 or upcast else None,  # fp16/bf16: exact products
                COUNT_BLOCKS=count_blocks, EVEN_D=next_pow2(dim) == dim)
    rows = bsz * variants * heads
    if tuned:  # first call per (q_rows, key_len, head_dim, variants, group) benchmarks the configs (outside graphs)
        _masked_attention_tuned[lambda m: (rows, triton.cdiv(q_rows, m["BLOCK_M"]))](*args, **meta)
    else:
        _masked_attention_kernel[(rows, m_blocks)](*args, BLOCK_M=block_m, BLOCK_N=block_n, **meta)
    return visited if count_blocks else None


def masked_attention_rows(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, seq_lens: torch.Tensor,
    spans: torch.Tensor, present: torch.Tensor, layout: torch.Tensor, *, q_rows: int, key_len: int,
    sm_scale: float | None = None, block_m: int | None = None, block_n: int | None = None,
) -> torch.Tensor:
    """The general entry: q/k/v/out as ``(B, 1|1+M, heads, rows, D)`` storage, a ``(B, 1+M, 6)`` ``layout``.

    For window ``b`` and variant ``var`` (:data:`LAYOUT_FIELDS`): query row
    ``i < q_count`` is storage row ``q_row0 + i`` of ``q`` (output row
    ``o_row0 + i`` of ``out``) at position ``q_first + i``; key position
    ``j`` is read from storage row ``j`` of the base variant (index 0) when
    ``j < kv_split``, else from row ``j + kv_shift`` of variant ``var`` (a
    variant dimension of 1 makes "variant" the same storage). ``q_rows`` is
    the largest ``q_count`` (the grid's height) and ``key_len`` the number of
    key positions. Writes ``out`` in place and returns it; rows not named by
    the layout are left untouched. Masks, skipping and numerics as
    :func:`masked_attention`; the torch reference is
    :func:`masked_attention_rows_reference`.
    """
    _launch(q, k, v, out, seq_lens, spans, present, layout, q_rows=q_rows, key_len=key_len, sm_scale=sm_scale,
            block_m=block_m, block_n=block_n, count_blocks=False)
    return out


def masked_attention_launch(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    seq_lens: torch.Tensor,
    spans: torch.Tensor,
    present: torch.Tensor,
    *,
    q_offset: int | torch.Tensor = 0,
    sm_scale: float | None = None,
    block_m: int | None = None,
    block_n: int | None = None,
    out: torch.Tensor | None = None,
    count_blocks: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`masked_attention` plus, with ``count_blocks``, the key blocks each program visited.

    The count tensor is ``(B, 1+M, Hq, ceil(Lq / block_m))`` int32 (how many
    key blocks were loaded and multiplied): the tests check with it that blocks
    inside a hidden span are skipped, not merely zeroed. ``out`` may be given
    as any strided ``(B, 1+M, Hq, Lq, D)`` view to write into (e.g. a
    ``(B, 1+M, Lq, Hq, D)`` buffer permuted, ready for the output projection).
    """
    bsz, variants, heads, kv_heads, q_len, key_len, dim = _check_shapes(q, k, v, seq_lens, spans, present)
    if out is None:
        out = torch.empty(bsz, variants, q_len, heads, dim, dtype=q.dtype, device=q.device).transpose(2, 3)
    elif out.shape != (bsz, variants, heads, q_len, dim):
        raise ValueError(f"out must be {(bsz, variants, heads, q_len, dim)}; got {tuple(out.shape)}")
    layout = dense_layout(bsz, variants, q_len, q_offset, q.device)
    visited = _launch(q, k, v, out, seq_lens, spans, present, layout, q_rows=q_len, key_len=key_len,
                      sm_scale=sm_scale, block_m=block_m, block_n=block_n, count_blocks=count_blocks)
    return out, visited


def masked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    seq_lens: torch.Tensor,
    spans: torch.Tensor,
    present: torch.Tensor,
    *,
    q_offset: int | torch.Tensor = 0,
    sm_scale: float | None = None,
    block_m: int | None = None,
    block_n: int | None = None,
) -> torch.Tensor:
    """Causal GQA attention of every window ``b`` in its ``1 + M`` modality-masked variants, one launch.

    Same contract as :func:`masked_attention_reference` (read it for the
    shapes). The grid is ``(B * (1+M) * Hq, query blocks)``; a program reads
    window ``b``'s keys/values directly (``k``/``v`` with a variant dimension of
    1 are never copied), builds the key mask from ``seq_lens``/``spans``/
    ``present`` in registers, and skips key blocks wholly inside a hidden span.
    """
    out, _ = masked_attention_launch(q, k, v, seq_lens, spans, present, q_offset=q_offset, sm_scale=sm_scale,
                                     block_m=block_m, block_n=block_n)
    return out
