"""The optimiser and learning-rate schedule every training stage shares.

AdamW decays matrices only: biases and norm gains are few, and pulling them
toward zero only fights the normalisation. The schedule is a linear warm-up
then a cosine decay to ``min_lr_ratio`` of the peak.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn


def adamw(params: Iterable[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the trainable ``params``, weight decay on those with two or more dimensions only."""
    params = [p for p in params if p.requires_grad]
    return torch.optim.AdamW(
        [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
         {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}],
        lr=lr,
    )


def warmup_cosine(step: int, steps: int, lr: float, warmup_steps: int, min_lr_ratio: float) -> float:
    """The learning rate at ``step`` (0-based) of ``steps``."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    frac = (step - warmup_steps) / max(1, steps - warmup_steps)
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))
