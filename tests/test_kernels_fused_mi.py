"""The fused label log-softmax / MI / importance / dominant kernel against ``migr_rt.mi.importance_from_log_probs``.

Interpreted on CPU (scoped ``TRITON_INTERPRET=1`` inside ``migr_rt.kernels``), compiled on GPU.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed (pip install 'migr-rt[kernels]')")

from migr_rt.kernels._triton import INTERPRET  # noqa: E402
from migr_rt.kernels.fused_mi import fused_mi, fused_mi_reference  # noqa: E402
from migr_rt.mi import importance_from_log_probs  # noqa: E402

DEVICE = "cpu" if INTERPRET else "cuda"


def compare(logits: torch.Tensor, present: torch.Tensor, target: torch.Tensor | None = None, **kwargs) -> tuple:
    got = fused_mi(logits, present, target, **kwargs)
    ref = fused_mi_reference(logits, present, target)
    names = ("log_probs", "target", "mi", "importance", "dominant")
    for name, g, r in zip(names, got, ref):
        assert g.shape == r.shape and g.dtype == r.dtype, (name, g.shape, r.shape, g.dtype, r.dtype)
        if g.is_floating_point():
            torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5, msg=name)
        else:
            assert torch.equal(g, r), (name, g, r)
    return got


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("bsz,num_m,labels", [(1, 2, 7), (5, 2, 11), (64, 2, 7), (6, 3, 7), (3, 1, 5)])
@pytest.mark.parametrize("given_target", [False, True], ids=["argmax-target", "given-target"])
def test_matches_reference(bsz, num_m, labels, dtype, given_target):
    gen = torch.Generator().manual_seed(bsz * 100 + num_m * 10 + labels)
    logits = (torch.randn(bsz, 1 + num_m, labels, generator=gen) * 3).to(dtype).to(DEVICE)
    present = (torch.rand(bsz, num_m, generator=gen) > 0.3).to(DEVICE)
    present[0] = True
    if bsz > 2:
        present[1] = False  # a window with nothing present
    target = torch.randint(0, labels, (bsz,), generator=gen).to(DEVICE) if given_target else None
    _, _, mi, importance, dominant = compare(logits, present, target, block_b=4)
    absent = ~present.any(dim=1)
    assert (dominant[absent] == -1).all() and (importance[absent] == 0).all()
    assert torch.allclose(importance[~absent].sum(dim=1), torch.ones(int((~absent).sum()), device=DEVICE))


def test_ties_pick_the_first_maximum_like_torch():
    """Equal MI for both modalities -> dominant 0; equal top logits -> target is the first label."""
    logits = torch.zeros(2, 3, 7, device=DEVICE)
    logits[0, 1, 2] = logits[0, 2, 2] = -1.0  # masking either modality drops label 0 by the same amount
    logits[1, 0, 3] = logits[1, 0, 5] = 2.0  # variant 0 ties between labels 3 and 5
    present = torch.ones(2, 2, dtype=torch.bool, device=DEVICE)
    _, target, _, _, dominant = compare(logits, present)
    assert target.tolist()[1] == 3 and dominant.tolist()[0] == 0


def test_non_contiguous_logits():
    base = torch.randn(4, 7, 3, device=DEVICE)
    compare(base.transpose(1, 2), torch.tensor([[True, False]] * 4, device=DEVICE))  # (4, 3, 7), strided


def test_no_modalities():
    """M = 0 (one variant): log-probs and target only (``importance_from_log_probs`` has no M = 0 case)."""
    logits = torch.randn(4, 1, 7, device=DEVICE)
    log_probs, target, mi, importance, dominant = fused_mi(logits, torch.zeros(4, 0, dtype=torch.bool, device=DEVICE))
    torch.testing.assert_close(log_probs, logits.log_softmax(-1), atol=1e-5, rtol=1e-5)
    assert torch.equal(target, logits[:, 0].argmax(-1)) and mi.shape == importance.shape == (4, 0)
    assert (dominant == -1).all()


def test_reference_is_the_mi_module():
    """The kernel's reference is ``log_softmax`` + :func:`migr_rt.mi.importance_from_log_probs`, nothing else."""
    logits = torch.randn(3, 3, 7)
    present = torch.tensor([[True, True], [True, False], [False, False]])
    log_probs, target, mi, importance, dominant = fused_mi_reference(logits, present)
    ref = importance_from_log_probs(logits.log_softmax(-1), logits.log_softmax(-1)[:, 0].argmax(-1), present)
    for a, b in zip((mi, importance, dominant), ref):
        assert torch.equal(a, b)
