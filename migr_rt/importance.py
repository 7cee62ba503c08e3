"""The result of Modality Importance scoring, shared by the torch reference and every backend.

Kept apart from :mod:`migr_rt.mi` (the torch reference) so that a run on an
exported artifact reads MI without importing torch: backends fill it with
numpy arrays, the reference and training with torch tensors. The two
properties work on either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class ModalityImportance:
    """MI of a batch of windows. Modality index m follows ``config.modalities``.

    Fields are numpy arrays from a backend (:meth:`migr_rt.backends.Backend.score_mi`) and torch tensors
    from :func:`migr_rt.mi.score_modality_importance`.
    """

    log_probs: Any  #: (B, 1+M, C) label log-probs; variant 0 = all present visible, 1+m = m masked
    target: Any  #: (B,) label index MI is measured for
    mi: Any  #: (B, M) log-prob drop when each modality is masked (0 for absent ones)
    importance: Any  #: (B, M) softmax of MI over present modalities (zeros when none is present)
    dominant: Any  #: (B,) argmax of MI over present modalities, -1 when none is present
    present: Any  #: (B, M) which modalities had input

    @property
    def predicted(self):
        """(B,) label index predicted with every present modality visible."""
        return self.log_probs[:, 0].argmax(-1)

    @property
    def probs(self):
        """(B, C) label distribution with every present modality visible."""
        first = self.log_probs[:, 0]
        return np.exp(first) if isinstance(first, np.ndarray) else first.exp()
