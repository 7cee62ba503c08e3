"""The one small interface every inference backend implements: encode, score_mi, prefill, step.

Tensors at the interface are torch tensors on the CPU (the backend moves
them where it computes); a backend's decoder cache stays in its own format
inside :class:`DecoderState`. Absent modalities are encoded as zeros and
hidden through ``present``/``visible`` masks, so every graph keeps one fixed
signature.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import torch

from migr_rt.mi import ModalityImportance
from migr_rt.model.config import MigrConfig


class BackendUnavailable(RuntimeError):
    """A requested backend cannot run here (package, library or device missing); the message says what."""


@dataclass
class ModalityTokens:
    """Projected encoder tokens of a batch of windows; zeros for a modality with no input."""

    visual: torch.Tensor  #: (B, Nv, H)
    audio: torch.Tensor  #: (B, Na, H)


@dataclass
class DecoderState:
    """A backend's decoder cache (``keys``/``values`` ``(layers, B, kv, T, D)`` and ``key_visible`` ``(B, T)``)."""

    keys: Any
    values: Any
    key_visible: Any

    @property
    def length(self) -> int:
        return int(self.key_visible.shape[1])


class Backend(abc.ABC):
    """One way to run the inference graphs of :mod:`migr_rt.model.graphs`."""

    #: short name used by ``--backend`` and in logs
    name: str = ""

    def __init__(self, config: MigrConfig) -> None:
        self.config = config

    def describe(self) -> str:
        """One line for the first log line: backend, device/providers, precision."""
        return self.name

    # -- encoders ----------------------------------------------------------------
    @abc.abstractmethod
    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Face crops ``(N, 3, S, S)`` in [0, 1] -> frame embeddings ``(N, D)`` (cacheable per frame)."""

    @abc.abstractmethod
    def pool_frames(self, frame_embeddings: torch.Tensor) -> torch.Tensor:
        """Frame embeddings ``(B, T, D)`` -> visual tokens ``(B, Nv, H)``."""

    @abc.abstractmethod
    def encode_audio(self, waveform: torch.Tensor) -> torch.Tensor:
        """Waveform ``(B, S)`` -> audio tokens ``(B, Na, H)``."""

    def encode(self, pixel_values: torch.Tensor | None, audio_values: torch.Tensor | None) -> ModalityTokens:
        """Both encoders for a batch; a modality given as ``None`` becomes zeros (hide it with ``present``)."""
        cfg = self.config
        if pixel_values is None and audio_values is None:
            raise ValueError("encode needs pixel_values or audio_values (both are None)")
        bsz = (pixel_values if pixel_values is not None else audio_values).shape[0]
        hidden = cfg.text_config.hidden_size
        if pixel_values is not None:
            b, t = pixel_values.shape[:2]
            frames = self.encode_frames(pixel_values.reshape(b * t, *pixel_values.shape[2:]))
            visual = self.pool_frames(frames.reshape(b, t, -1))
        else:
            visual = torch.zeros(bsz, cfg.num_visual_tokens, hidden)
        audio = self.encode_audio(audio_values) if audio_values is not None else torch.zeros(
            bsz, cfg.num_audio_tokens, hidden)
        return ModalityTokens(visual, audio)

    # -- decoder -----------------------------------------------------------------
    @abc.abstractmethod
    def score_mi(self, tokens: ModalityTokens, present: torch.Tensor) -> ModalityImportance:
        """Label log-probs of the B x (1 + M) variants and MI for the predicted label (``present`` ``(B, M)``)."""

    @abc.abstractmethod
    def prefill(
        self, input_ids: torch.Tensor, tokens: ModalityTokens, visible: torch.Tensor
    ) -> tuple[torch.Tensor, DecoderState]:
        """Run ``input_ids`` ``(B, L)`` (same length per row): logits ``(B, V)`` at the last position and the cache."""

    @abc.abstractmethod
    def step(self, token: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        """Append ``token`` ``(B,)``: logits ``(B, V)`` and the cache one position longer."""


def importance_result(log_probs, mi, importance, dominant, present: torch.Tensor) -> ModalityImportance:
    """A :class:`ModalityImportance` from a scoring graph's four outputs (any array type)."""
    log_probs = torch.as_tensor(log_probs)
    return ModalityImportance(
        log_probs=log_probs,
        target=log_probs[:, 0].argmax(dim=-1),
        mi=torch.as_tensor(mi),
        importance=torch.as_tensor(importance),
        dominant=torch.as_tensor(dominant).long(),
        present=present.bool(),
    )
