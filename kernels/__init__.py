"""Triton kernels with their torch references (``migr_rt.kernels``).

* :mod:`~migr_rt.kernels.masked_attention` -- causal GQA flash attention over
  B windows x (1 + M) modality-masked variants without per-variant copies
  (masks built in-kernel, hidden key blocks skipped), beside
  ``masked_attention_reference``.
* :mod:`~migr_rt.kernels.fused_mi` -- label log-softmax, MI, importance and
  dominant modality for every variant in one launch, beside
  ``fused_mi_reference`` (= :func:`migr_rt.mi.importance_from_log_probs`).
* :mod:`~migr_rt.kernels.scoring` -- ``ScoringGraph.forward`` on those
  kernels (:func:`fused_scoring`: shared rows in layer 0, variant 0's rows +
  each masked variant's suffix rows after it), and :class:`KernelScoring`
  with CUDA-graph replay, which :class:`~migr_rt.backends.torch_backend.TorchBackend` uses.
* :mod:`~migr_rt.kernels.compile_check` -- lowers every kernel to sm_80/sm_90
  cubin without a GPU (``MIGR_RT_TRITON_COMPILE_ONLY=1 python -m migr_rt.kernels.compile_check``).

Importing this package is cheap and does not import Triton; the submodules
do. On a machine without CUDA they run in Triton's interpreter (see
:mod:`migr_rt.kernels._triton`), which is how CI checks them.
"""

from __future__ import annotations

import importlib.util
import os

import torch

__all__ = ["kernels_wanted"]


def kernels_wanted(requested: bool | None, device: torch.device | str) -> bool:
    """Whether the torch backend scores MI on the kernels.

    ``requested`` (the backend's ``kernels=`` flag) wins when not ``None``;
    otherwise ``MIGR_RT_KERNELS=0``/``1`` decides; otherwise they are used
    when the model is on CUDA and Triton is importable. Forcing them on where
    they cannot run raises ``RuntimeError`` with the reason (forcing them on a
    CPU model without CUDA runs them in Triton's interpreter: correct, slow,
    meant for tests).
    """
    device = torch.device(device)
    if requested is None:
        env = os.environ.get("MIGR_RT_KERNELS", "").strip().lower()
        if env in {"0", "false", "off", "no"}:
            return False
        if env in {"1", "true", "on", "yes"}:
            requested = True
    if requested is None:
        return (device.type == "cuda" and importlib.util.find_spec("triton") is not None
                and os.environ.get("TRITON_INTERPRET", "0") != "1")
    if requested:
        from migr_rt.kernels._triton import check_device

        check_device(device)
    return bool(requested)
