"""Visual and audio encoders that turn a window of face crops and a waveform into modality tokens.

Both are built from plain convolutions, matmuls and softmax so they export
to ONNX/TensorRT unchanged, and both split a per-frame stage (cacheable
across overlapping windows at run time) from a cheap pooling stage.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from migr_rt.model.config import MigrConfig


def segment_mean(x: torch.Tensor, segments: int) -> torch.Tensor:
    """Average ``(B, L, D)`` over ``segments`` contiguous, near-equal time segments -> ``(B, segments, D)``.

    Written as one averaging matrix built from ``L`` so it accepts any length
    (a short window at the end of a file) and exports to ONNX with a dynamic
    time axis. A segment with no steps (``L < segments``) is zero.
    """
    length = x.shape[1]
    steps = torch.arange(length, device=x.device)
    owner = (steps * segments) // length  # segment of each step
    member = (owner[None, :] == torch.arange(segments, device=x.device)[:, None]).to(x.dtype)  # (S, L)
    weights = member / member.sum(dim=1, keepdim=True).clamp(min=1.0)
    return torch.einsum("sl,bld->bsd", weights, x)


class FrameEncoder(nn.Module):
    """Per-frame CNN: one face crop -> one embedding. Frames are independent, so embeddings cache."""

    def __init__(self, config: MigrConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for cout in config.visual_channels:
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.GroupNorm(1, cout), nn.GELU()]
            cin = cout
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Linear(cin, config.visual_dim)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:  # (N, 3, S, S) in [0, 1] -> (N, D)
        x = self.convs((frames - 0.5) / 0.25)
        return self.proj(x.mean(dim=(2, 3)))


class VisualEncoder(nn.Module):
    """Face crops ``(B, T, 3, S, S)`` -> ``num_visual_tokens`` tokens of ``visual_dim``."""

    def __init__(self, config: MigrConfig) -> None:
        super().__init__()
        self.frame_encoder = FrameEncoder(config)
        self.temporal = nn.Conv1d(config.visual_dim, config.visual_dim, 3, padding=1)
        self.num_tokens = config.num_visual_tokens

    def embed_frames(self, frames: torch.Tensor) -> torch.Tensor:  # (B, T, 3, S, S) -> (B, T, D)
        b, t = frames.shape[:2]
        return self.frame_encoder(frames.reshape(b * t, *frames.shape[2:])).reshape(b, t, -1)

    def pool_frames(self, frame_embeddings: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, Nv, D)
        x = frame_embeddings + F.gelu(self.temporal(frame_embeddings.transpose(1, 2))).transpose(1, 2)
        return segment_mean(x, self.num_tokens)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.pool_frames(self.embed_frames(frames))


def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int, f_min: float, f_max: float) -> np.ndarray:
    """Triangular HTK-scale mel filters, ``(n_fft // 2 + 1, n_mels)``, each filter normalised to unit area."""
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lower) / np.maximum(centre - lower, 1e-9)
    down = (upper - freqs[None, :]) / np.maximum(upper - centre, 1e-9)
    fb = np.clip(np.minimum(up, down), 0.0, None)
    fb /= np.maximum(fb.sum(axis=1, keepdims=True), 1e-9)
    return fb.T.astype(np.float32)


class LogMel(nn.Module):
    """Waveform ``(B, S)`` -> log-mel ``(B, n_mels, frames)``.

    The STFT is a strided convolution with fixed windowed cos/sin kernels, so
    the whole front end is one Conv + MatMul in ONNX and runs in TensorRT
    without an STFT op. The kernels are derived from the config, not stored
    in checkpoints (:meth:`reset_buffers` rebuilds them after loading).
    """

    def __init__(self, config: MigrConfig) -> None:
        super().__init__()
        self.n_fft, self.hop = config.n_fft, config.hop_length
        self.mel_args = (config.n_fft, config.n_mels, config.sample_rate, config.f_min, config.f_max)
        self.pad = self.n_fft - self.hop  # right pad so a window of S samples gives S // hop frames
        self.register_buffer("dft", torch.empty(2 * (self.n_fft // 2 + 1), 1, self.n_fft), persistent=False)
        self.register_buffer("mel", torch.empty(self.n_fft // 2 + 1, config.n_mels), persistent=False)
        self.reset_buffers()

    def kernels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The windowed DFT kernels ``(2 * bins, 1, n_fft)`` and the mel filterbank ``(bins, n_mels)``."""
        window = np.hanning(self.n_fft + 1)[:-1]
        k = np.arange(self.n_fft // 2 + 1)[:, None]
        n = np.arange(self.n_fft)[None, :]
        angle = 2 * np.pi * k * n / self.n_fft
        basis = np.concatenate([np.cos(angle) * window, -np.sin(angle) * window]).astype(np.float32)
        return torch.from_numpy(basis)[:, None, :], torch.from_numpy(mel_filterbank(*self.mel_args))

    @torch.no_grad()
    def reset_buffers(self) -> None:
        dft, mel = self.kernels()
        self.dft.copy_(dft)
        self.mel.copy_(mel)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        # Always fp32: spectral power of a loud window overflows fp16.
        x = F.pad(waveform.float()[:, None, :], (0, self.pad))
        spec = F.conv1d(x, self.dft.float(), stride=self.hop)  # (B, 2 * bins, frames)
        real, imag = spec.chunk(2, dim=1)
        power = real.square() + imag.square()
        mel = torch.einsum("bft,fm->bmt", power, self.mel.float())
        return torch.log(mel + 1e-6)


class AudioEncoder(nn.Module):
    """Waveform ``(B, S)`` at ``sample_rate`` -> ``num_audio_tokens`` tokens of ``audio_dim``."""

    def __init__(self, config: MigrConfig) -> None:
        super().__init__()
        self.logmel = LogMel(config)
        c = config.audio_channels
        self.convs = nn.Sequential(
            nn.Conv1d(config.n_mels, c, 3, stride=2, padding=1), nn.GroupNorm(1, c), nn.GELU(),
            nn.Conv1d(c, c, 3, stride=2, padding=1), nn.GroupNorm(1, c), nn.GELU(),
            nn.Conv1d(c, config.audio_dim, 3, stride=2, padding=1), nn.GELU(),
        )
        self.num_tokens = config.num_audio_tokens

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        mel = self.logmel(waveform)
        # Per-utterance normalisation: loudness is a cue, so keep the mean
        # level as one extra offset instead of discarding it entirely.
        level = mel.mean(dim=(1, 2), keepdim=True)
        mel = (mel - level) / (mel.std(dim=(1, 2), keepdim=True) + 1e-5) + 0.1 * level
        mel = mel.to(self.convs[0].weight.dtype)
        return segment_mean(self.convs(mel).transpose(1, 2), self.num_tokens)


class Projector(nn.Module):
    """Encoder width -> decoder hidden size (two-layer MLP, as in LLaVA-style connectors)."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim_in, dim_out), nn.GELU(), nn.Linear(dim_out, dim_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
