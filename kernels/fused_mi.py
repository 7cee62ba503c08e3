"""Label log-softmax, MI, normalised importance and the dominant modality for B x (1 + M) variants, one launch.

Input choice: the **label logits** ``(B, 1+M, C)`` (the answer-slot hidden
state times the label rows of the LM head), not the hidden states. That
projection is ``(B(1+M), H) x (H, C)`` with C = 7..11 labels: one small GEMM
that cuBLAS already does at its best, and fusing it would put an H-long dot
product per label in every program for no saving in memory traffic (the
hidden rows are read once either way). Everything after it -- the
label-restricted log-softmax of every variant, picking the target label,
the MI differences, masking to present modalities, the softmax over them and
the argmax -- is a chain of tiny elementwise/reduction ops that eager torch
runs as ~15 launches; here it is one program per block of windows.

Definitions (identical to :func:`migr_rt.mi.importance_from_log_probs`):

* ``log_probs[b, v] = log_softmax(logits[b, v])`` (fp32);
* ``target[b]`` = given, or ``argmax_c log_probs[b, 0, c]`` (first maximum, as torch);
* ``mi[b, m] = log_probs[b, 0, target] - log_probs[b, 1+m, target]`` where
  ``present[b, m]``, else 0;
* ``importance[b] = softmax(mi[b])`` over present modalities, zeros elsewhere
  and for a window with none present;
* ``dominant[b] = argmax`` over present modalities (first maximum), -1 when none.
"""

from __future__ import annotations

import torch

from migr_rt.kernels._triton import (
    HAS_TRITON, check_device, jit, next_pow2, reduce_max, reduce_min, reduce_sum, tl, triton,
)
from migr_rt.mi import importance_from_log_probs


def fused_mi_reference(
    logits: torch.Tensor, present: torch.Tensor, target: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The torch reference: ``log_softmax`` then :func:`migr_rt.mi.importance_from_log_probs`.

    ``logits`` ``(B, 1+M, C)``, ``present`` ``(B, M)``, ``target`` ``(B,)`` or
    ``None`` (argmax of variant 0). Returns ``log_probs`` ``(B, 1+M, C)`` fp32,
    ``target`` ``(B,)`` int64, ``mi``, ``importance`` ``(B, M)`` fp32 and
    ``dominant`` ``(B,)`` int64.
    """
    log_probs = logits.float().log_softmax(dim=-1)
    if target is None:
        target = log_probs[:, 0].argmax(dim=-1)
    target = target.to(device=logits.device, dtype=torch.long)
    mi, importance, dominant = importance_from_log_probs(log_probs, target, present.to(logits.device))
    return log_probs, target, mi, importance, dominant


@jit
def _fused_mi_kernel(
    LOGITS, TARGET_IN, PRESENT, LOG_PROBS, TARGET, MI, IMPORTANCE, DOMINANT,
    bsz, num_labels, sl_b, sl_v, sl_c,
    NUM_VARIANTS: tl.constexpr, NUM_MODALITIES: tl.constexpr, HAS_TARGET: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_MOD: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < bsz
    cols = tl.arange(0, BLOCK_C)
    col_ok = cols < num_labels
    tile_ok = row_ok[:, None] & col_ok[None, :]
    out_cols = rows[:, None] * (NUM_VARIANTS * num_labels) + cols[None, :]

    # Variant 0 (all present modalities visible): its log-probs fix the target label.
    x = tl.load(LOGITS + rows[:, None] * sl_b + cols[None, :] * sl_c, mask=tile_ok, other=0.0).to(tl.float32)
    x = tl.where(col_ok[None, :], x, float("-inf"))  # padded rows stay finite (zeros), padded labels vanish
    mx = reduce_max(x, 1)
    lp0 = x - (mx + tl.log(reduce_sum(tl.exp(x - mx[:, None]), 1)))[:, None]
    tl.store(LOG_PROBS + out_cols, lp0, mask=tile_ok)
    if HAS_TARGET:
        target = tl.load(TARGET_IN + rows, mask=row_ok, other=0).to(tl.int32)
    else:  # first maximum, like torch.argmax
        best = reduce_max(lp0, 1)
        target = reduce_min(tl.where(lp0 == best[:, None], cols[None, :], BLOCK_C), 1)
    picked0 = reduce_sum(tl.where(cols[None, :] == target[:, None], lp0, 0.0), 1)

    mods = tl.arange(0, BLOCK_MOD)
    mod_ok = mods < NUM_MODALITIES
    pres = tl.load(PRESENT + rows[:, None] * NUM_MODALITIES + mods[None, :],
                   mask=row_ok[:, None] & mod_ok[None, :], other=0) != 0
    mi = tl.full([BLOCK_B, BLOCK_MOD], 0.0, dtype=tl.float32)
    for var in tl.static_range(1, NUM_VARIANTS):
        x = tl.load(LOGITS + rows[:, None] * sl_b + var * sl_v + cols[None, :] * sl_c, mask=tile_ok,
                    other=0.0).to(tl.float32)
        x = tl.where(col_ok[None, :], x, float("-inf"))
        mx = reduce_max(x, 1)
        lp = x - (mx + tl.log(reduce_sum(tl.exp(x - mx[:, None]), 1)))[:, None]
        tl.store(LOG_PROBS + out_cols + var * num_labels, lp, mask=tile_ok)
        picked = reduce_sum(tl.where(cols[None, :] == target[:, None], lp, 0.0), 1)
        mi = tl.where(mods[None, :] == var - 1, (picked0 - picked)[:, None], mi)

    mi = tl.where(pres, mi, 0.0)
    any_present = reduce_max(pres.to(tl.int32), 1) > 0
    scores = tl.where(pres, mi, float("-inf"))
    top = reduce_max(scores, 1)
    top_safe = tl.where(any_present, top, 0.0)
    e = tl.where(pres, tl.exp(scores - top_safe[:, None]), 0.0)
    denom = reduce_sum(e, 1)
    importance = tl.where(any_present[:, None], e / tl.where(denom > 0.0, denom, 1.0)[:, None], 0.0)
    dominant = reduce_min(tl.where(pres & (scores == top[:, None]), mods[None, :], BLOCK_MOD), 1)
    dominant = tl.where(any_present, dominant, -1)

    mod_tile = row_ok[:, None] & mod_ok[None, :]
    mod_ptrs = rows[:, None] * NUM_MODALITIES + mods[None, :]
    tl.store(MI + mod_ptrs, mi, mask=mod_tile)
    tl.store(IMPORTANCE + mod_ptrs, importance, mask=mod_tile)
    tl.store(DOMINANT + rows, dominant.to(tl.int64), mask=row_ok)
    tl.store(TARGET + rows, target.to(tl.int64), mask=row_ok)


def fused_mi(
    logits: torch.Tensor, present: torch.Tensor, target: torch.Tensor | None = None, *, block_b: int = 16
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One launch of :func:`fused_mi_reference`'s computation (same arguments and outputs).

    Grid: ``ceil(B / block_b)`` programs, each holding ``block_b`` windows'
    ``(1+M) x C`` logits in registers (C padded to a power of two).
    """
    check_device(logits.device)
    if logits.dim() != 3:
        raise ValueError(f"logits must be (B, 1+M, C); got {tuple(logits.shape)}")
    bsz, variants, num_labels = logits.shape
    num_m = variants - 1
    if present.shape != (bsz, num_m):
        raise ValueError(f"present must be (B, M) = {(bsz, num_m)}; got {tuple(present.shape)}")
    device = logits.device
    log_probs = torch.empty(bsz, variants, num_labels, dtype=torch.float32, device=device)
    target_out = torch.empty(bsz, dtype=torch.long, device=device)
    mi = torch.empty(bsz, num_m, dtype=torch.float32, device=device)
    importance = torch.empty(bsz, num_m, dtype=torch.float32, device=device)
    dominant = torch.empty(bsz, dtype=torch.long, device=device)
    present_i = present.to(device=device, dtype=torch.int8).contiguous()
    target_in = (target.to(device=device, dtype=torch.int32).contiguous() if target is not None
                 else torch.zeros(1, dtype=torch.int32, device=device))
    if bsz and HAS_TRITON:
        _fused_mi_kernel[(triton.cdiv(bsz, block_b),)](
            logits, target_in, present_i, log_probs, target_out, mi, importance, dominant,
            bsz, num_labels, logits.stride(0), logits.stride(1), logits.stride(2),
            NUM_VARIANTS=variants, NUM_MODALITIES=num_m, HAS_TARGET=target is not None,
            BLOCK_B=block_b, BLOCK_C=next_pow2(num_labels, 2), BLOCK_MOD=next_pow2(max(num_m, 1), 2),
        )
    return log_probs, target_out, mi, importance, dominant
