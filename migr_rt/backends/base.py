"""The one small interface every inference backend implements: encode, score_mi, prefill, step.

Arrays at the interface are numpy arrays on the CPU: float32 features,
int64 token ids, bool masks (a backend takes any array-like, CPU torch
tensors included, and moves them where it computes). numpy rather than torch
so that a run on an exported artifact never imports torch: onnxruntime needs
only numpy, and importing torch costs a second at start-up and a 700 MB
install. A backend's decoder cache stays in its own format inside
:class:`DecoderState`. Absent modalities are encoded as zeros and
hidden through ``present``/``visible`` masks, so every graph keeps one fixed
signature.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from migr_rt.importance import ModalityImportance

if TYPE_CHECKING:
    from migr_rt.model.config import MigrConfig
    from migr_rt.model.spec import ModelSpec


class BackendUnavailable(RuntimeError):
    """A requested backend cannot run here (package, library or device missing); the message says what."""


@dataclass
class ModalityTokens:
    """Projected encoder tokens of a batch of windows; zeros for a modality with no input."""

    visual: np.ndarray  #: (B, Nv, H) float32
    audio: np.ndarray  #: (B, Na, H) float32


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

    def __init__(self, config: MigrConfig | ModelSpec) -> None:
        #: the model's config: a MigrConfig on the torch backend, a ModelSpec (the same names, no transformers) on
        #: an exported artifact's
        self.config = config

    def describe(self) -> str:
        """One line for the first log line: backend, device/providers, precision."""
        return self.name

    # -- encoders ----------------------------------------------------------------
    @abc.abstractmethod
    def encode_frames(self, frames: np.ndarray) -> np.ndarray:
        """Face crops ``(N, 3, S, S)`` in [0, 1] -> frame embeddings ``(N, D)`` (cacheable per frame)."""

    @abc.abstractmethod
    def pool_frames(self, frame_embeddings: np.ndarray) -> np.ndarray:
        """Frame embeddings ``(B, T, D)`` -> visual tokens ``(B, Nv, H)``."""

    @abc.abstractmethod
    def encode_audio(self, waveform: np.ndarray) -> np.ndarray:
        """Waveform ``(B, S)`` -> audio tokens ``(B, Na, H)``."""

    def encode(self, pixel_values: np.ndarray | None, audio_values: np.ndarray | None) -> ModalityTokens:
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
            visual = np.zeros((bsz, cfg.num_visual_tokens, hidden), np.float32)
        audio = self.encode_audio(audio_values) if audio_values is not None else np.zeros(
            (bsz, cfg.num_audio_tokens, hidden), np.float32)
        return ModalityTokens(visual, audio)

    # -- decoder -----------------------------------------------------------------
    @abc.abstractmethod
    def score_mi(self, tokens: ModalityTokens, present: np.ndarray) -> ModalityImportance:
        """Label log-probs of the B x (1 + M) variants and MI for the predicted label (``present`` ``(B, M)``)."""

    @abc.abstractmethod
    def prefill(
        self, input_ids: np.ndarray, tokens: ModalityTokens, visible: np.ndarray
    ) -> tuple[np.ndarray, DecoderState]:
        """Run ``input_ids`` ``(B, L)`` (same length per row): logits ``(B, V)`` at the last position and the cache."""

    @abc.abstractmethod
    def step(self, token: np.ndarray, state: DecoderState) -> tuple[np.ndarray, DecoderState]:
        """Append ``token`` ``(B,)``: logits ``(B, V)`` and the cache one position longer."""


def as_numpy(a, dtype=None) -> np.ndarray:
    """``a`` (numpy, a list, a torch tensor on any device) as a contiguous CPU array, of ``dtype`` if given."""
    if hasattr(a, "detach"):  # a torch tensor, told apart without importing torch
        a = a.detach().cpu()
        if str(a.dtype) == "torch.bfloat16":  # numpy has no bfloat16 (an engine or a bf16 model's output)
            a = a.float()
    return np.ascontiguousarray(np.asarray(a), dtype=dtype)


def importance_result(log_probs, mi, importance, dominant, present) -> ModalityImportance:
    """A :class:`ModalityImportance` of numpy arrays from a scoring graph's four outputs (CPU array-likes)."""
    log_probs = as_numpy(log_probs, np.float32)
    return ModalityImportance(
        log_probs=log_probs,
        target=log_probs[:, 0].argmax(-1),
        mi=as_numpy(mi, np.float32),
        importance=as_numpy(importance, np.float32),
        dominant=as_numpy(dominant, np.int64),
        present=as_numpy(present, bool),
    )
